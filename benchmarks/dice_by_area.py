"""Where a judge's segmenters lose: their Dice on the held-out real images, per bin of the real training masks'
area quantiles (10/25/50/75/90 %). Each group is one or more segmenter folders (saved by `fastsynth evaluate
--downstream` under DATA/eval/segmenters/, or a model's filter segmenter); per bin the mean over the group's
segmenters and images, and the spread of the per-segmenter means. Prints a table; --json writes everything.

    python benchmarks/dice_by_area.py --real bundled-256 \\
        --group "real=fastsynth/bundled_256/filter-segmenter" \\
        --group "synthetic=/tmp/j1/img/eval/segmenters/synthetic-seed*" [--json FILE]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def bin_table(area: np.ndarray, edges: np.ndarray, dice: dict) -> list:
    """Rows per area bin: the images in it and, per group, the mean Dice and the spread of per-segmenter means."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (area >= lo) & (area < hi)
        row = {"area": [float(lo), float(hi)], "n": int(s.sum())}
        for name, d in dice.items():  # d: [segmenters, images]
            per = d[:, s].mean(1) if s.any() else np.full(len(d), np.nan)
            row[name] = {"dice": float(per.mean()), "seed_std": float(per.std(ddof=1)) if len(per) > 1 else 0.0}
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="model folder or name: its split.json held-out and training stems")
    ap.add_argument("--group", action="append", required=True, metavar="NAME=GLOB",
                    help="segmenter folders (a glob), repeatable")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mask_spread import area_edges

    from fastsynth.metrics.io import load_real, resolve_real
    from fastsynth.metrics.masks import mask_stats
    from fastsynth.runtime.agreement import AgreementScorer

    src, rset = resolve_real(args.real)
    _, test = load_real(src, 256, rset.test_stems)
    _, train = load_real(src, 256, rset.train_stems)
    images, masks = test[:, :3].transpose(0, 2, 3, 1), test[:, 3]
    area = mask_stats(masks)["area_fraction"]
    edges = area_edges(mask_stats(train[:, 3])["area_fraction"])
    dice, members = {}, {}
    for g in args.group:
        name, _, pattern = g.partition("=")
        folders = sorted(glob.glob(pattern))
        if not folders:
            sys.exit(f"--group {g}: no segmenter folder matches {pattern!r}")
        members[name] = folders
        dice[name] = np.stack([AgreementScorer(f, "cpu")(images, masks) for f in folders])
    rows = bin_table(area, edges, dice)
    names = list(dice)
    print("area bin           n  " + "  ".join(f"{n:>18}" for n in names))
    print(f"{'all':17s} {len(area):3d}  " + "  ".join(f"{dice[n].mean():18.3f}" for n in names))
    for r in rows:
        cells = "  ".join(f"{r[n]['dice']:.3f} ± {r[n]['seed_std']:.3f}".rjust(18) for n in names)
        print(f"[{r['area'][0]:.3f}, {r['area'][1]:.3f})  {r['n']:3d}  {cells}")
    if args.json:
        out = {"real": str(args.real), "members": members, "bins": rows, "test_area": area.tolist(),
               "dice": {n: d.tolist() for n, d in dice.items()}}
        open(args.json, "w").write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
