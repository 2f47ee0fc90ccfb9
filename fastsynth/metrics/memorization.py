"""Memorization / privacy audit: the nearest real training image of every synthetic image.

``method="ssim"`` (default): a shortlist of the ``k`` nearest training images by pixel distance (RGB, area-
downsampled to at most 32x32, per-image mean removed so a brightness shift does not hide a copy), then SSIM at
full resolution against each shortlisted image; the nearest is the one with the highest SSIM. A synthetic image
is flagged as a near-copy when that SSIM is >= ``ssim_threshold`` (0.90 by default: at 64x64 two different
endoscopy frames rarely exceed ~0.7, while a copy with sampling noise stays above 0.9).
``method="features"``: cosine similarity of given feature vectors (e.g. the Inception features computed for
FID); flagged when >= ``feature_threshold``.

When held-out real images are given, the same search from each held-out image gives a baseline: how close an
independent real image gets to the training set. ``closer_than_heldout`` counts synthetic images nearer to a
training image than the closest held-out image is (a relative near-copy test independent of the threshold).
"""

from __future__ import annotations

import numpy as np

SSIM_THRESHOLD = 0.90
FEATURE_THRESHOLD = 0.97
SHORTLIST = 5


def _small(images: np.ndarray, side: int = 32) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if t.shape[-1] > side:
        t = F.adaptive_avg_pool2d(t, side)
    t = t - t.mean(dim=(1, 2, 3), keepdim=True)
    return t.flatten(1).numpy().astype(np.float32)


def _shortlist(q: np.ndarray, ref: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Indices [Nq, k] of the k nearest rows of ref (squared L2), nearest first."""
    k = min(k, len(ref))
    rn = (ref ** 2).sum(1)
    out = []
    for s in range(0, len(q), chunk):
        qq = q[s:s + chunk]
        d = (qq ** 2).sum(1)[:, None] + rn[None] - 2 * qq @ ref.T
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, idx, 1).argsort(1)
        out.append(np.take_along_axis(idx, order, 1))
    return np.concatenate(out)


def nearest_by_ssim(query: np.ndarray, ref: np.ndarray, k: int = SHORTLIST) -> tuple[np.ndarray, np.ndarray]:
    """For uint8 images query [N, H, W, 3] and ref [M, H, W, 3]: (index of nearest ref, its SSIM) per query."""
    from .msssim import ssim

    if query.shape[1:] != ref.shape[1:]:
        raise ValueError(f"memorization audit needs images of one size: {query.shape[1:]} vs {ref.shape[1:]}")
    cand = _shortlist(_small(query), _small(ref), k)
    best_i = np.empty(len(query), np.int64)
    best_s = np.empty(len(query), np.float64)
    for s in range(0, len(query), 256):
        c = cand[s:s + 256]
        q = np.repeat(query[s:s + 256], c.shape[1], axis=0)
        r = ref[c.reshape(-1)]
        v = ssim(q, r).double().numpy().reshape(c.shape)
        j = v.argmax(1)
        best_i[s:s + 256] = c[np.arange(len(c)), j]
        best_s[s:s + 256] = v[np.arange(len(c)), j]
    return best_i, best_s


def nearest_by_features(query_feats: np.ndarray, ref_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of nearest ref, cosine similarity) per query feature vector."""
    q = query_feats / np.linalg.norm(query_feats, axis=1, keepdims=True).clip(1e-12)
    r = ref_feats / np.linalg.norm(ref_feats, axis=1, keepdims=True).clip(1e-12)
    sim = q @ r.T
    i = sim.argmax(1)
    return i, sim[np.arange(len(q)), i]


def audit(synth: np.ndarray, train: np.ndarray, train_stems: list[str], synth_ids: list | None = None,
          heldout: np.ndarray | None = None, method: str = "ssim", synth_feats: np.ndarray | None = None,
          train_feats: np.ndarray | None = None, heldout_feats: np.ndarray | None = None,
          threshold: float | None = None) -> dict:
    """Nearest training image per synthetic image, near-copy flags and counts (see the module docstring)."""
    if method == "ssim":
        thr = SSIM_THRESHOLD if threshold is None else threshold
        idx, sim = nearest_by_ssim(synth, train)
        base = nearest_by_ssim(heldout, train)[1] if heldout is not None and len(heldout) else None
    elif method == "features":
        if synth_feats is None or train_feats is None:
            raise ValueError("method='features' needs synth_feats and train_feats")
        thr = FEATURE_THRESHOLD if threshold is None else threshold
        idx, sim = nearest_by_features(synth_feats, train_feats)
        base = nearest_by_features(heldout_feats, train_feats)[1] if heldout_feats is not None else None
    else:
        raise ValueError(f"unknown memorization method {method!r}; choose ssim or features")
    ids = list(range(len(synth))) if synth_ids is None else [int(v) for v in synth_ids]
    flagged = sim >= thr
    out = {
        "method": method, "threshold": thr, "n_synthetic": int(len(synth)), "n_train": int(len(train)),
        "n_flagged": int(flagged.sum()), "fraction_flagged": float(flagged.mean()),
        "similarity_max": float(sim.max()), "similarity_mean": float(sim.mean()),
        "similarity_p99": float(np.quantile(sim, 0.99)),
        "flagged": [{"index": ids[i], "nearest_train": train_stems[idx[i]], "similarity": float(sim[i])}
                    for i in np.flatnonzero(flagged)[np.argsort(-sim[flagged])]],
        "nearest": [{"index": ids[i], "nearest_train": train_stems[idx[i]], "similarity": round(float(sim[i]), 5)}
                    for i in range(len(sim))],
    }
    if base is not None:
        out["heldout_baseline"] = {"n": int(len(base)), "similarity_max": float(base.max()),
                                   "similarity_mean": float(base.mean())}
        out["n_closer_than_heldout"] = int((sim > base.max()).sum())
    return out
