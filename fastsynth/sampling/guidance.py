"""Classifier-free guidance (Ho & Salimans 2022) over a denoiser *function*.

fastsynth's network is trained with the conditioning left out for a share of examples (the unconditional ``pairs``
mode: an all-zero conditioning tensor), so the same network gives both the conditional and the unconditional
output. Guided output: ``u + w (c - u)`` with ``w`` the guidance scale (1 = no guidance). Both outputs come from
one network call on a doubled batch, so every backend with a dynamic batch serves it unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_model_fn(model_fn: ModelFn, scale: float) -> ModelFn:
    """``model_fn`` with classifier-free guidance of strength ``scale`` (returned unchanged for scale 1)."""
    if scale == 1.0:
        return model_fn

    def fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = model_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)]))
        c, u = out.chunk(2)
        return u + scale * (c - u)

    return fn
