"""The eager PyTorch backend: the reference every other backend is checked against."""

from __future__ import annotations

import torch


def eager_model_fn(model, device: torch.device, dtype: torch.dtype):
    net = model.to(device=device, dtype=dtype).eval()
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def model_fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return net(x_t.to(device=device, dtype=dtype), t.to(device), cond.to(device=device, dtype=dtype)).float()

    return model_fn
