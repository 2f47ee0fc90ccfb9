"""torch.compile backend: fixed shapes (the last batch is padded, never recompiled), channels_last;
max-autotune with CUDA graphs on GPU. Inductor's on-disk caches make the second run's compile cheaper."""

from __future__ import annotations

import torch

from .eager import _cast
from .padding import fixed_batch


def compile_model_fn(model, device: torch.device, dtype: torch.dtype, batch_size: int):
    net = model.to(device=device, dtype=dtype).eval().to(memory_format=torch.channels_last)
    mode = "max-autotune" if device.type == "cuda" else "default"
    compiled = torch.compile(net, mode=mode, dynamic=False, fullgraph=True)

    def prep(v: torch.Tensor) -> torch.Tensor:
        v = _cast(v, device, dtype)
        return v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v

    @torch.inference_mode()
    def call(*args: torch.Tensor) -> torch.Tensor:
        return compiled(*(prep(a) for a in args)).float().clone()  # clone: CUDA graphs reuse their outputs

    return fixed_batch(call, batch_size)
