"""The eager PyTorch backend: the reference every other backend is checked against."""

from __future__ import annotations

import torch


def _cast(v: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Float inputs in the network's precision; integer inputs (timesteps) only moved."""
    return v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)


def eager_model_fn(model, device: torch.device, dtype: torch.dtype):
    """``out = f(*inputs)`` for any module (denoiser: x_t, t, cond; segmenter: image), float32 out."""
    net = model.to(device=device, dtype=dtype).eval()
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def model_fn(*args: torch.Tensor) -> torch.Tensor:
        return net(*(_cast(a, device, dtype) for a in args)).float()

    return model_fn
