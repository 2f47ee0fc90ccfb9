"""Fixed-shape calls: backends compiled for one batch size (torch.compile, TensorRT) never see another."""

from __future__ import annotations

import torch


def fixed_batch(fn, batch_size: int):
    """Wrap ``out = fn(*tensors)`` (all batch-first) so every call has exactly ``batch_size`` rows: larger
    calls are split, smaller ones padded with copies of the last row whose outputs are dropped."""

    def wrapped(*args: torch.Tensor) -> torch.Tensor:
        n = args[0].shape[0]
        if n > batch_size:
            return torch.cat([wrapped(*(a[i:i + batch_size] for a in args)) for i in range(0, n, batch_size)])
        if n < batch_size:
            pad = batch_size - n
            args = tuple(torch.cat([a, a[-1:].expand(pad, *a.shape[1:])]) for a in args)
        return fn(*args)[:n]

    return wrapped
