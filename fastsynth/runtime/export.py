"""Parity of a backend against eager: random inputs of the denoiser or a segmenter, max abs / rel error.

(Loading a model folder and writing the artifact + report is ``fastsynth.export.export_artifact``, one level up:
it needs the model loaders, which runtime does not import.)
"""

from __future__ import annotations

from typing import Callable

import torch


def denoiser_inputs(resolution: int, channels: int = 4) -> Callable:
    """Random denoiser inputs over all timestep ranges, with a random known-value indicator."""
    def make(g: torch.Generator, b: int):
        x = torch.randn(b, channels, resolution, resolution, generator=g)
        c = torch.cat([torch.randn(b, channels, resolution, resolution, generator=g),
                       (torch.rand(b, channels, resolution, resolution, generator=g) > 0.5).float()], 1)
        return x, torch.randint(0, 1000, (b,), generator=g), c
    return make


def image_inputs(resolution: int) -> Callable:
    """Random ImageNet-normalised images, the segmenter's input."""
    return lambda g, b: (torch.randn(b, 3, resolution, resolution, generator=g),)


def parity(ref_fn, test_fn, resolution: int, channels: int = 4, batch_size: int = 4, n_inputs: int = 3,
           seed: int = 0, tol: float = 1e-3, make_inputs: Callable | None = None) -> dict:
    """Max abs / relative error of ``test_fn`` vs ``ref_fn`` on fresh random inputs."""
    make_inputs = make_inputs or denoiser_inputs(resolution, channels)
    g = torch.Generator().manual_seed(seed)
    max_abs, max_rel = 0.0, 0.0
    for _ in range(n_inputs):
        args = make_inputs(g, batch_size)
        a, b = ref_fn(*args).float().cpu(), test_fn(*args).float().cpu()
        err = (a - b).abs()
        max_abs = max(max_abs, err.max().item())
        max_rel = max(max_rel, (err.max() / a.abs().max().clamp_min(1e-12)).item())
    return {"max_abs": max_abs, "max_rel": max_rel, "n_inputs": n_inputs, "batch_size": batch_size,
            "tolerance_rel": tol, "ok": max_rel <= tol}


def parity_tolerance(precision: str) -> float:
    """Accepted max relative error against eager fp32: 1e-3 for fp32, 3e-2 for fp16, 5e-2 for bf16 (8-bit
    mantissa; the same bound as the bf16 eager test)."""
    return {"fp32": 1e-3, "fp16": 3e-2, "auto": 3e-2}.get(precision, 5e-2)
