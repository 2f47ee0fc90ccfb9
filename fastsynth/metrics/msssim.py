"""SSIM, MS-SSIM and the mean pairwise MS-SSIM diversity score (lower = more diverse).

SSIM follows Wang et al. 2004 with the usual constants (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03,
"valid" filtering, data range 255); MS-SSIM follows Wang, Simoncelli & Bovik 2003 with the standard scale
weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and 2x2 average pooling between scales, as pytorch-msssim
and torchmetrics compute it (negative contrast terms clamped at 0, per-channel then channel mean).

Small images: the 5-scale version needs a side of at least (11 - 1) * 2^4 + 1 = 161 px (the coarsest scale
must still hold an 11-px window). For smaller images we keep the window at 11 and use the largest number of
scales S <= 5 whose coarsest side is still >= 11 (64 px -> 3 scales: 64, 32, 16), with the first S weights
renormalised to sum to 1. Below 11 px the window shrinks to the largest odd size that fits, on 1 scale.
The scales and window used are returned with every score so numbers are never compared across settings
silently.
"""

from __future__ import annotations

import numpy as np

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def msssim_settings(side: int, win_size: int = WIN_SIZE, max_scales: int = 5) -> tuple[int, int, tuple]:
    """(window size, number of scales, weights) used for images whose smaller side is ``side``."""
    if side >= win_size:
        scales = 1
        while scales < max_scales and side // (2 ** scales) >= win_size:
            scales += 1
    else:
        win_size = side if side % 2 else side - 1
        scales = 1
    w = np.asarray(MS_WEIGHTS[:scales], np.float64)
    return max(win_size, 1), scales, tuple((w / w.sum()).tolist())


def _gauss_window(size: int, sigma: float):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).float()


def _filter(x, g):
    """Separable Gaussian filter, 'valid' padding, per channel: x [N, C, H, W]."""
    import torch.nn.functional as F

    c = x.shape[1]
    k = len(g)
    x = F.conv2d(x, g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)


def _ssim_cs(x, y, win, data_range: float):
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_x, mu_y = _filter(x, win), _filter(y, win)
    sxx = _filter(x * x, win) - mu_x ** 2
    syy = _filter(y * y, win) - mu_y ** 2
    sxy = _filter(x * y, win) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)  # [N, C]


def _as_float(a):
    import torch

    t = torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a
    if t.ndim == 3:  # [N, H, W] grey
        t = t[:, None]
    elif t.ndim == 4 and t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2)
    return t.float()


def ssim(x, y, data_range: float = 255.0, win_size: int = WIN_SIZE):
    """Per-image SSIM of two batches (uint8 or float, [N, H, W, C] / [N, C, H, W] / [N, H, W]) -> [N]."""
    x, y = _as_float(x), _as_float(y)
    side = min(x.shape[-2:])
    win_size = min(win_size, side if side % 2 else side - 1)
    s, _ = _ssim_cs(x, y, _gauss_window(win_size, WIN_SIGMA), data_range)
    return s.mean(1)


def ms_ssim(x, y, data_range: float = 255.0, win_size: int = WIN_SIZE, max_scales: int = 5):
    """Per-image MS-SSIM of two batches -> [N] (see the module docstring for small images)."""
    import torch
    import torch.nn.functional as F

    x, y = _as_float(x), _as_float(y)
    if x.shape != y.shape:
        raise ValueError(f"MS-SSIM of images of different shapes {tuple(x.shape)} vs {tuple(y.shape)}")
    win_size, scales, weights = msssim_settings(min(x.shape[-2:]), win_size, max_scales)
    win = _gauss_window(win_size, WIN_SIGMA)
    w = torch.tensor(weights, dtype=torch.float32)
    mcs = []
    for i in range(scales):
        s, cs = _ssim_cs(x, y, win, data_range)
        if i < scales - 1:
            mcs.append(torch.relu(cs))
            x = F.avg_pool2d(x, 2, ceil_mode=False)
            y = F.avg_pool2d(y, 2, ceil_mode=False)
    vals = torch.stack(mcs + [torch.relu(s)], dim=0)  # [S, N, C]
    return torch.prod(vals ** w.view(-1, 1, 1), dim=0).mean(1)


def random_pairs(n: int, n_pairs: int, seed: int = 0) -> np.ndarray:
    """``n_pairs`` distinct unordered pairs (i < j) of n items, seeded (all pairs when there are fewer)."""
    if n < 2:
        raise ValueError("need at least 2 images for pairwise MS-SSIM")
    total = n * (n - 1) // 2
    rng = np.random.default_rng(seed)
    if total <= n_pairs:
        i, j = np.triu_indices(n, 1)
        return np.stack([i, j], 1)
    seen: set = set()
    out = []
    while len(out) < n_pairs:
        a, b = rng.integers(0, n, 2)
        if a == b:
            continue
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return np.asarray(out, np.int64)


def pairwise_msssim(images: np.ndarray, n_pairs: int = 1000, seed: int = 0, batch_size: int = 256) -> dict:
    """Mean MS-SSIM over random pairs of one set of uint8 images (diversity; lower = more diverse)."""
    import torch

    imgs = np.asarray(images)
    pairs = random_pairs(len(imgs), n_pairs, seed)
    vals = []
    with torch.inference_mode():
        for s in range(0, len(pairs), batch_size):
            p = pairs[s:s + batch_size]
            vals.append(ms_ssim(imgs[p[:, 0]], imgs[p[:, 1]]).double().numpy())
    v = np.concatenate(vals)
    side = min(_as_float(imgs[:1]).shape[-2:])
    win, scales, weights = msssim_settings(side)
    return {"mean": float(v.mean()), "std": float(v.std()), "n_pairs": int(len(v)), "n_images": int(len(imgs)),
            "seed": seed, "scales": scales, "window": win, "weights": list(weights)}
