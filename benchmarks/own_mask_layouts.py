"""Small polyps from a model's own masks (issue 21: the 256² model draws few polyps under the real median area, and
the judge's synthetic-only segmenters lose exactly there; benchmarks/NOTES.md, 2026-12-07 night).

``masks``: masks for ``fastsynth generate --mode from-masks``, each one of the model's own single-region masks (from a
dataset generated with ``--keep-agreeing ... --min-agreement 0``, those at or above ``--min-agreement``), rotated,
maybe flipped, rescaled and moved inside the endoscope's round field of view (``novel_layouts.place``). ``--areas
small``: each rescaled to an area drawn from the real training masks' areas below their median (the share the model
lacks); ``--areas same``: its own area (the control). No real mask's shape is used, only the real areas' values.

``mix``: a dataset of the first K rows of BASE followed by all rows of EXTRA (the common columns, re-indexed).

    python benchmarks/own_mask_layouts.py masks --source /tmp/s/unf --real bundled-256 --areas small --n 300 --out M
    fastsynth generate --model bundled-256 --mode from-masks --masks M --n 300 --seed 1 --out FM
    python benchmarks/own_mask_layouts.py mix --base /tmp/j1/img --first 600 --extra FM --out MIX
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def masks(args) -> None:
    from PIL import Image

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mask_spread import _agreement
    from novel_layouts import place

    from fastsynth.metrics.io import load_real, load_synthetic, resolve_real
    from fastsynth.metrics.masks import mask_stats

    rng = np.random.default_rng(args.seed)
    src, rset = resolve_real(args.real)
    _, train = load_real(src, args.size, rset.train_stems)
    real_area = mask_stats(train[:, 3])["area_fraction"]
    small = real_area[real_area < np.median(real_area)]
    syn = load_synthetic(args.source)
    agreement = _agreement(args.source, syn.index)
    if agreement is None:
        sys.exit(f"{args.source}: no agreement column (generate it with --keep-agreeing ... --min-agreement 0)")
    own = syn.masks[agreement >= args.min_agreement]
    if own.shape[-1] != args.size:
        own = np.stack([np.array(Image.fromarray(m).resize((args.size, args.size))) for m in own])
    sources = [m >= 128 for m, k in zip(own, mask_stats(own)["components"]) if k == 1]
    if not sources:
        sys.exit(f"{args.source}: no single-region mask at agreement >= {args.min_agreement}")
    os.makedirs(args.out, exist_ok=True)
    made, areas = 0, []
    while made < args.n:
        m = sources[rng.integers(len(sources))]
        target = m.mean() if args.areas == "same" else float(rng.choice(small))
        canvas = np.zeros((args.size, args.size), bool)
        if place(canvas, m, float(np.sqrt(target / m.mean())), rng, args.fov):
            Image.fromarray((canvas * 255).astype(np.uint8)).save(os.path.join(args.out, f"{made:05d}.png"))
            areas.append(canvas.mean())
            made += 1
    a = np.array(areas)
    print(json.dumps({"sources": len(sources), "made": made, "area_mean": float(a.mean()),
                      "area_p10_p50_p90": np.percentile(a, [10, 50, 90]).round(4).tolist(),
                      "real_area_mean": float(real_area.mean())}))


def mix(args) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def table(root):
        t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(os.path.join(root, "data", "*.parquet")))])
        return t.take(pc.sort_indices(t, [("index", "ascending")]))

    base, extra = table(args.base), table(args.extra)
    cols = [c for c in base.column_names if c in extra.column_names]
    a, b = base.select(cols).slice(0, args.first), extra.select(cols)
    b = b.set_column(cols.index("index"), "index",
                     pa.array(range(a.num_rows, a.num_rows + b.num_rows), b.schema.field("index").type))
    os.makedirs(os.path.join(args.out, "data"), exist_ok=True)
    pq.write_table(pa.concat_tables([a, b.cast(a.schema)]), os.path.join(args.out, "data", "train-00000.parquet"))
    m = json.load(open(os.path.join(args.base, "fastsynth.json")))
    m["n"] = a.num_rows + b.num_rows
    m["mode"] = f"mixed: the first {a.num_rows} rows of {args.base} + {b.num_rows} of {args.extra}"
    json.dump(m, open(os.path.join(args.out, "fastsynth.json"), "w"), indent=1)
    print(f"{args.out}: {m['n']} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("masks")
    m.add_argument("--source", required=True, help="a generated dataset with an agreement column")
    m.add_argument("--real", required=True, help="model folder or name: its training masks' areas")
    m.add_argument("--areas", choices=("small", "same"), default="small")
    m.add_argument("--min-agreement", type=float, default=0.69)
    m.add_argument("--n", type=int, default=300)
    m.add_argument("--size", type=int, default=256)
    m.add_argument("--fov", type=float, default=0.44)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)
    x = sub.add_parser("mix")
    x.add_argument("--base", required=True)
    x.add_argument("--first", type=int, required=True)
    x.add_argument("--extra", required=True)
    x.add_argument("--out", required=True)
    args = ap.parse_args()
    (masks if args.cmd == "masks" else mix)(args)


if __name__ == "__main__":
    sys.exit(main())
