"""torch.compile backend: fixed shapes (the last batch is padded, never recompiled), channels_last;
max-autotune with CUDA graphs on GPU. Inductor's on-disk caches make the second run's compile cheaper."""

from __future__ import annotations

import torch


def compile_model_fn(model, device: torch.device, dtype: torch.dtype, batch_size: int):
    net = model.to(device=device, dtype=dtype).eval().to(memory_format=torch.channels_last)
    mode = "max-autotune" if device.type == "cuda" else "default"
    compiled = torch.compile(net, mode=mode, dynamic=False, fullgraph=True)

    @torch.inference_mode()
    def model_fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n = x_t.shape[0]
        if n < batch_size:  # pad to the compiled shape
            pad = batch_size - n
            x_t = torch.cat([x_t, x_t[-1:].expand(pad, *x_t.shape[1:])])
            cond = torch.cat([cond, cond[-1:].expand(pad, *cond.shape[1:])])
            t = torch.cat([t, t[-1:].expand(pad)])
        elif n > batch_size:
            return torch.cat([model_fn(x_t[i:i + batch_size], t[i:i + batch_size], cond[i:i + batch_size])
                              for i in range(0, n, batch_size)])
        out = compiled(x_t.to(dtype).contiguous(memory_format=torch.channels_last), t,
                       cond.to(dtype).contiguous(memory_format=torch.channels_last))
        return out[:n].float().clone()

    return model_fn
