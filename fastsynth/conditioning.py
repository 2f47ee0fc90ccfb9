"""Conditioning of the three modes as (known values, per-channel indicator) tensor pairs.

x is [N, 4, H, W]: RGB in [-1, 1] + mask channel in {-1, +1}. ``indicator`` is 1 where a value is given.
- pairs:      nothing known -> a new image and a new mask;
- from-masks: the mask channel known everywhere -> an image that fits the given mask;
- inpaint:    all four channels known outside ``region`` -> a new polyp (image + mask) inside it.
"""

from __future__ import annotations

import torch

from .morphology import binary_dilation


def cond_pairs(n: int, resolution: int, channels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.zeros(n, channels, resolution, resolution)
    return z, z.clone()


def cond_from_masks(mask_channel: torch.Tensor, channels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = mask_channel.shape
    known = torch.zeros(n, channels, h, w, dtype=mask_channel.dtype)
    lc = mask_channel.shape[1]  # label channels: the last lc of x (1 for a binary mask)
    known[:, channels - lc:] = mask_channel
    indicator = torch.zeros_like(known)
    indicator[:, channels - lc:] = 1.0
    return known, indicator


def cond_inpaint(x0: torch.Tensor, region01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep x0 outside ``region01`` ([N, 1, H, W], 1 = regenerate)."""
    indicator = (1.0 - region01).expand_as(x0).contiguous()
    return x0 * indicator, indicator


def inpaint_region(mask_channel: torch.Tensor, dilate_px: int) -> torch.Tensor:
    """The region to regenerate: the real mask dilated by ``dilate_px`` (20 px at 256x256 in the paper).
    With several label channels [N, K-1, H, W]: the dilated foreground (any class but the background)."""
    return binary_dilation((mask_channel > 0).any(1, keepdim=True).float(), dilate_px)


def dilate_px_for(resolution: int, px_at_256: int) -> int:
    return max(0, int(round(px_at_256 * resolution / 256)))


def random_boxes(n: int, res: int, g: torch.Generator) -> torch.Tensor:
    """Random rectangles covering 1/8 to 1/2 of each side, as {0,1} [n, 1, res, res]."""
    out = torch.zeros(n, 1, res, res)
    lo, hi = max(2, res // 8), max(3, res // 2)
    for i in range(n):
        h, w = (int(v) for v in torch.randint(lo, hi + 1, (2,), generator=g))
        y = int(torch.randint(0, res - h + 1, (1,), generator=g))
        x = int(torch.randint(0, res - w + 1, (1,), generator=g))
        out[i, :, y:y + h, x:x + w] = 1.0
    return out
