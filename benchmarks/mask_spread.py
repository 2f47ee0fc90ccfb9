"""Are generated masks' region counts and areas within the real set's spread? The real yardstick: the means of
random halves of the real training masks (as "two halves of the real set" is FID's yardstick), and the bootstrap 95%
interval of the real mean at the synthetic set's size. Prints one JSON.

    python benchmarks/mask_spread.py --real bundled-256 --synthetic DIR [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="model folder or name: its split.json training stems are read")
    ap.add_argument("--synthetic", required=True, help="a generated dataset folder")
    ap.add_argument("--resolution", type=int, default=None, help="default: the synthetic data's")
    ap.add_argument("--draws", type=int, default=2000)
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
    text = json.dumps(out, indent=2, default=float)
    print(text)
    if args.json:
        open(args.json, "w").write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
