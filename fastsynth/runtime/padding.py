"""Fixed-shape calls: backends compiled for one batch size (torch.compile, TensorRT) never see another."""

from __future__ import annotations

import torch


def fixed_batch(fn, batch_size: int):
    """Wrap ``out = fn(x_t, t, cond)`` so every call has exactly ``batch_size`` rows (pad, or split)."""

    def wrapped(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n = x_t.shape[0]
        if n > batch_size:
            return torch.cat([wrapped(x_t[i:i + batch_size], t[i:i + batch_size], cond[i:i + batch_size])
                              for i in range(0, n, batch_size)])
        if n < batch_size:  # pad with copies of the last row; their outputs are dropped
            pad = batch_size - n
            x_t = torch.cat([x_t, x_t[-1:].expand(pad, *x_t.shape[1:])])
            cond = torch.cat([cond, cond[-1:].expand(pad, *cond.shape[1:])])
            t = torch.cat([t, t[-1:].expand(pad)])
        return fn(x_t, t, cond)[:n]

    return wrapped
