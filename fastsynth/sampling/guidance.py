"""Classifier-free guidance (Ho & Salimans 2022) over a denoiser *function*.

fastsynth's network is trained with the conditioning left out for a share of examples (the unconditional ``pairs``
mode: an all-zero conditioning tensor), so the same network gives both the conditional and the unconditional
output. Guided output: ``u + w (c - u)`` with ``w`` the guidance scale (1 = no guidance). Both outputs come from
one network call on a doubled batch, so every backend with a dynamic batch serves it unchanged.

A guidance interval (Kynkäänniemi et al., NeurIPS 2024, "Applying guidance in a limited interval improves sample
and distribution quality in diffusion models") guides only the steps whose noise level sigma = sqrt((1 - a) / a)
lies in (lo, hi]: guidance at the highest noise levels pulls samples toward a few modes, and at the lowest it does
little; the other steps take the conditional output alone, one network evaluation instead of two.
"""

from __future__ import annotations

from typing import Callable

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sigma_of_t(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The noise level sigma_t = sqrt((1 - a_t) / a_t) of every training timestep (the EDM convention)."""
    ac = alphas_cumprod.double()
    return ((1 - ac) / ac).sqrt()


def guided_model_fn(model_fn: ModelFn, scale: float, interval: tuple[float, float] | None = None,
                    alphas_cumprod: torch.Tensor | None = None) -> ModelFn:
    """``model_fn`` with classifier-free guidance of strength ``scale`` (returned unchanged for scale 1), applied
    at every step, or only where sigma_t is in ``interval`` = (lo, hi] (then ``alphas_cumprod`` is needed)."""
    if scale == 1.0:
        return model_fn

    def guided(x_t, t, cond):
        out = model_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)]))
        c, u = out.chunk(2)
        return u + scale * (c - u)

    if interval is None:
        return guided
    if alphas_cumprod is None:
        raise ValueError("a guidance interval needs the schedule's alphas_cumprod")
    lo, hi = interval
    sig = sigma_of_t(alphas_cumprod)
    guide_at = (sig > lo) & (sig <= hi)  # per training timestep, decided once (not in the sampling loop)

    def fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        inside = guide_at[t.detach().round().long().clamp(0, len(sig) - 1).cpu()]
        if bool(inside.all()):
            return guided(x_t, t, cond)
        if not bool(inside.any()):
            return model_fn(x_t, t, cond)
        idx = torch.nonzero(inside).flatten().to(x_t.device)  # rows at different noise levels: guide some
        out = model_fn(x_t, t, cond).clone()
        out[idx] = guided(x_t[idx], t[idx], cond[idx])
        return out

    return fn


def autoguided_model_fn(model_fn: ModelFn, weak_fn: ModelFn, scale: float) -> ModelFn:
    """Autoguidance (Karras et al., NeurIPS 2024): ``weak + scale (model - weak)``, where ``weak_fn`` is a weaker
    version of the same model (here: the same network after fewer training steps). Unlike classifier-free guidance it
    needs no condition, so it can guide the unconditional pass that draws a new image and mask together. Returned
    unchanged for scale 1."""
    if scale == 1.0:
        return model_fn

    def fn(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        good = model_fn(x_t, t, cond)
        return weak_fn(x_t, t, cond).lerp(good, scale)  # weak + scale * (good - weak)

    return fn
