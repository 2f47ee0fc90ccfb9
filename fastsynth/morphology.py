"""Binary morphology on {0,1} float masks [N, 1, H, W] in pure torch (batched): the elliptical kernel, opening and
dilation that mask decoding (``fastsynth.sampling.masks``) and the conditioning regions (``fastsynth.conditioning``)
share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ellipse_kernel(k: int) -> torch.Tensor:
    """A k x k elliptical (disc) structuring element, like cv2.getStructuringElement(MORPH_ELLIPSE)."""
    c = (k - 1) / 2
    r = k / 2
    yy, xx = torch.meshgrid(torch.arange(k, dtype=torch.float32), torch.arange(k, dtype=torch.float32),
                            indexing="ij")
    return ((((yy - c) / r) ** 2 + ((xx - c) / r) ** 2) <= 1.0).float()


def _morph(m: torch.Tensor, kernel: torch.Tensor, erode: bool) -> torch.Tensor:
    k = kernel.shape[-1]
    a = k // 2
    if erode:  # out[y] = min_i in[y + i - a]; outside the image counts as foreground (no border erosion)
        pad = (a, k - 1 - a, a, k - 1 - a)
        w = kernel
        xp = F.pad(m, pad, value=1.0)
        return (F.conv2d(xp, w[None, None]) >= kernel.sum() - 0.5).to(m.dtype)
    # dilation by the reflected kernel, so that opening = erosion then dilation leaves the kernel shape fixed
    pad = (k - 1 - a, a, k - 1 - a, a)
    w = torch.flip(kernel, dims=(0, 1))
    xp = F.pad(m, pad, value=0.0)
    return (F.conv2d(xp, w[None, None]) > 0.5).to(m.dtype)


def binary_opening(mask01: torch.Tensor, k: int) -> torch.Tensor:
    """Opening of a {0,1} float mask [N, 1, H, W] with a k x k ellipse."""
    if k <= 1:
        return mask01
    kern = ellipse_kernel(k).to(mask01.device)
    return _morph(_morph(mask01, kern, erode=True), kern, erode=False)


def binary_dilation(mask01: torch.Tensor, px: int) -> torch.Tensor:
    """Dilate a {0,1} float mask [N, 1, H, W] by ``px`` pixels (disc of diameter 2*px+1)."""
    if px <= 0:
        return mask01
    kern = ellipse_kernel(2 * px + 1).to(mask01.device)
    return _morph(mask01, kern, erode=False)
