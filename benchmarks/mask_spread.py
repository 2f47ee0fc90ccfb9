"""Are generated masks' region counts and areas within the real set's spread? The real yardstick: the means of
random halves of the real training masks (as "two halves of the real set" is FID's yardstick), and the bootstrap 95%
interval of the real mean at the synthetic set's size. Then where the difference lies: the share of each set in
the real set's area deciles, the same for masks with several regions, and, for a dataset generated with
``--keep-agreeing`` (an ``agreement`` column: e.g. ``--min-agreement 0`` to score every candidate), the median
agreement per bin and the share a threshold (``--threshold``) keeps. Prints one JSON.

    python benchmarks/mask_spread.py --real bundled-256 --synthetic DIR [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="model folder or name: its split.json training stems are read")
    ap.add_argument("--synthetic", required=True, help="a generated dataset folder")
    ap.add_argument("--resolution", type=int, default=None, help="default: the synthetic data's")
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--threshold", type=float, default=None, help="an agreement threshold to break down by area bin")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from fastsynth.metrics.io import load_real, load_synthetic, resolve_real
    from fastsynth.metrics.masks import mask_stats

    synth = load_synthetic(args.synthetic)
    res = args.resolution or synth.masks.shape[-1]
    src, rset = resolve_real(args.real)  # a model's split.json and training data, as evaluate --real reads them
    _, real = load_real(src, res, rset.train_stems)
    rs, ss = mask_stats(real[:, 3]), mask_stats(synth.masks)
    rng = np.random.default_rng(0)
    out = {"real_n": len(real), "synthetic_n": len(synth.masks), "resolution": res}
    for key in ("components", "area_fraction"):
        r, s = rs[key].astype(float), ss[key].astype(float)
        halves = []
        for _ in range(args.draws):
            p = rng.permutation(len(r))
            halves.append(abs(r[p[: len(r) // 2]].mean() - r[p[len(r) // 2:]].mean()))
        boot = [r[rng.integers(0, len(r), len(s))].mean() for _ in range(args.draws)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[key] = {"real_mean": r.mean(), "synthetic_mean": s.mean(), "difference": s.mean() - r.mean(),
                    "real_halves_difference_p95": float(np.percentile(halves, 95)),
                    "real_bootstrap_95": [float(lo), float(hi)], "within": bool(lo <= s.mean() <= hi)}
        if key == "components":
            out[key]["fraction_multi_region"] = {"real": float((r > 1).mean()), "synthetic": float((s > 1).mean())}
    out["area_bins"] = area_bins(rs, ss, _agreement(args.synthetic, synth.index), args.threshold)
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        open(args.json, "w").write(text + "\n")


def _agreement(root, index):
    """The dataset's agreement column in the order of ``index`` (load_synthetic's row order), or None."""
    import pyarrow.parquet as pq

    from fastsynth.dataset.writer import read_manifest, shard_files

    files = shard_files(Path(root), read_manifest(root))
    if not files or not str(files[0]).endswith(".parquet") or "agreement" not in pq.read_schema(files[0]).names:
        return None
    by_index = {}
    for f in files:
        d = pq.read_table(f, columns=["index", "agreement"]).to_pydict()
        by_index.update(zip(d["index"], d["agreement"]))
    return np.array([by_index[int(i)] for i in index], dtype=float)


AREA_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def area_edges(real_area: np.ndarray) -> np.ndarray:
    """Bin edges at the real areas' deciles and quartiles, from 0 to just above 1 (every area falls in a bin)."""
    return np.concatenate([[0.0], np.quantile(real_area, AREA_QUANTILES), [1.0 + 1e-9]])


def area_bins(rs, ss, agreement=None, threshold=None):
    """Shares of real and synthetic masks per bin of the real areas' quantiles (their deciles and quartiles)."""
    ra, sa = rs["area_fraction"], ss["area_fraction"]
    edges = area_edges(ra)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        r, s = (ra >= lo) & (ra < hi), (sa >= lo) & (sa < hi)
        row = {"area": [float(lo), float(hi)], "real_share": float(r.mean()), "synthetic_share": float(s.mean()),
               "real_multi_region": float((rs["components"][r] > 1).mean()) if r.any() else None,
               "synthetic_multi_region": float((ss["components"][s] > 1).mean()) if s.any() else None}
        if agreement is not None and s.any():
            row["median_agreement"] = float(np.median(agreement[s]))
            if threshold is not None:
                row["kept_share"] = float((agreement[s] >= threshold).mean())
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
