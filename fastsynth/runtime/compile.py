"""torch.compile backend: fixed shapes (the last batch is padded, never recompiled), channels_last;
max-autotune with CUDA graphs on GPU. Inductor's on-disk caches make the second run's compile cheaper."""

from __future__ import annotations

import torch

from .padding import fixed_batch


def compile_model_fn(model, device: torch.device, dtype: torch.dtype, batch_size: int):
    net = model.to(device=device, dtype=dtype).eval().to(memory_format=torch.channels_last)
    mode = "max-autotune" if device.type == "cuda" else "default"
    compiled = torch.compile(net, mode=mode, dynamic=False, fullgraph=True)

    @torch.inference_mode()
    def call(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = compiled(x_t.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last),
                       t.to(device), cond.to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last))
        return out.float().clone()  # clone: CUDA graphs reuse their output buffers

    return fixed_batch(call, batch_size)
