"""Mask statistics of a set of binary masks and their distances to a real set.

Per mask: polyp area fraction, number of connected components (8-connectivity, ``scipy.ndimage.label``),
centroid of the foreground (y, x as fractions of height/width; NaN for an empty mask).
Between sets: 1-D Wasserstein distance and Kolmogorov-Smirnov statistic of the area fraction, total
variation distance of the component-count histogram (0, 1, 2, 3, 4, 5+), 2-D Wasserstein-1 (exact optimal
transport on equal-size subsamples) and mean offset of the centroids, and the difference of empty-mask
rates. Histograms share fixed bins so the two sets can be drawn side by side.
"""

from __future__ import annotations

import numpy as np

from ..errors import require

AREA_BINS = np.linspace(0.0, 1.0, 21)
COMPONENT_BINS = (0, 1, 2, 3, 4, 5)  # last bin is "5 or more"
CENTROID_BINS = np.linspace(0.0, 1.0, 11)


def mask_stats(masks: np.ndarray) -> dict:
    """masks uint8 [N, H, W] ({0, 255}, or anything binarised at 128) -> per-mask arrays."""
    ndimage = require("scipy.ndimage", "eval", "Mask statistics (--metrics masks)")

    m = np.asarray(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {m.shape}")
    fg = m >= 128
    n, h, w = fg.shape
    area = fg.reshape(n, -1).mean(1)
    structure = np.ones((3, 3), bool)
    comps = np.array([ndimage.label(f, structure=structure)[1] for f in fg], np.int64)
    yy, xx = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    cnt = fg.reshape(n, -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (fg.sum(2) * yy).sum(1) / cnt
        cx = (fg.sum(1) * xx).sum(1) / cnt
    cy[cnt == 0] = np.nan
    cx[cnt == 0] = np.nan
    return {"area_fraction": area, "components": comps, "centroid_y": cy, "centroid_x": cx}


def _hist(v: np.ndarray, bins) -> list:
    h, _ = np.histogram(v, bins=bins)
    return (h / max(len(v), 1)).tolist()


def component_histogram(comps: np.ndarray) -> list:
    c = np.minimum(np.asarray(comps), COMPONENT_BINS[-1])
    return [float(np.mean(c == k)) if len(c) else 0.0 for k in COMPONENT_BINS]


def summarize(stats: dict) -> dict:
    a, c = stats["area_fraction"], stats["components"]
    ok = ~np.isnan(stats["centroid_y"])
    return {
        "n": int(len(a)),
        "empty_fraction": float(np.mean(c == 0)) if len(c) else 0.0,
        "area_fraction_mean": float(a.mean()), "area_fraction_median": float(np.median(a)),
        "area_fraction_std": float(a.std()),
        "components_mean": float(c.mean()),
        "centroid_mean": [float(stats["centroid_y"][ok].mean()), float(stats["centroid_x"][ok].mean())]
        if ok.any() else [None, None],
        "hist_area_fraction": _hist(a, AREA_BINS),
        "hist_components": component_histogram(c),
        "hist_centroid_y": _hist(stats["centroid_y"][ok], CENTROID_BINS),
        "hist_centroid_x": _hist(stats["centroid_x"][ok], CENTROID_BINS),
    }


def wasserstein_2d(p: np.ndarray, q: np.ndarray, max_points: int = 500, seed: int = 0) -> float:
    """Exact W1 between two point clouds via an assignment on equal-size random subsamples."""
    linear_sum_assignment = require("scipy.optimize", "eval", "Mask statistics (--metrics masks)").linear_sum_assignment
    cdist = require("scipy.spatial.distance", "eval", "Mask statistics (--metrics masks)").cdist

    if len(p) == 0 or len(q) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    k = min(len(p), len(q), max_points)
    ps = p[rng.choice(len(p), k, replace=False)]
    qs = q[rng.choice(len(q), k, replace=False)]
    d = cdist(ps, qs)
    r, c = linear_sum_assignment(d)
    return float(d[r, c].mean())


def compare(synth: dict, real: dict, seed: int = 0) -> dict:
    """Distances between the mask statistics of a synthetic and a real set (0 = identical distributions)."""
    stats = require("scipy.stats", "eval", "Mask statistics (--metrics masks)")
    ks_2samp, wasserstein_distance = stats.ks_2samp, stats.wasserstein_distance

    a_s, a_r = synth["area_fraction"], real["area_fraction"]
    hs, hr = np.array(component_histogram(synth["components"])), np.array(component_histogram(real["components"]))
    cs = np.stack([synth["centroid_y"], synth["centroid_x"]], 1)
    cr = np.stack([real["centroid_y"], real["centroid_x"]], 1)
    cs, cr = cs[~np.isnan(cs).any(1)], cr[~np.isnan(cr).any(1)]
    return {
        "area_fraction_wasserstein": float(wasserstein_distance(a_s, a_r)),
        "area_fraction_ks": float(ks_2samp(a_s, a_r).statistic),
        "components_tv": float(0.5 * np.abs(hs - hr).sum()),
        "centroid_wasserstein": wasserstein_2d(cs, cr, seed=seed),
        "centroid_mean_offset": float(np.linalg.norm(cs.mean(0) - cr.mean(0))) if len(cs) and len(cr) else None,
        "empty_fraction_diff": float(np.mean(synth["components"] == 0) - np.mean(real["components"] == 0)),
    }


def label_map_report(synth_labels: np.ndarray, real_labels: np.ndarray, class_names, seed: int = 0) -> dict:
    """Label maps (values 0..K-1, [N, H, W]): the statistics of the foreground (any class but 0) in the binary
    report's keys (``synthetic``, ``real``, ``distance``), and the same per class >= 1 under ``per_class``."""
    s, r = np.asarray(synth_labels), np.asarray(real_labels)

    def one(ms, mr):
        ss, sr = mask_stats(ms), mask_stats(mr)
        return {"synthetic": summarize(ss), "real": summarize(sr), "distance": compare(ss, sr, seed)}

    out = one(np.where(s > 0, 255, 0).astype(np.uint8), np.where(r > 0, 255, 0).astype(np.uint8))
    out["per_class"] = {str(class_names[k]): one(np.where(s == k, 255, 0).astype(np.uint8),
                                                 np.where(r == k, 255, 0).astype(np.uint8))
                        for k in range(1, len(class_names))}
    return out
