"""An area-aware label-agreement filter (issue 21: the default filter keeps 26 % / 34 % of the smallest candidates
against 57 % of the middle ones, because its 128² segmenter misses small polyps; benchmarks/NOTES.md, 2026-12-07
night). Selects ``--keep`` rows of a dataset generated with ``--keep-agreeing ... --min-agreement 0`` (every
candidate scored) and writes them as a new dataset for ``fastsynth evaluate``:

``threshold``: the first ``--keep`` rows with agreement >= ``--threshold`` (what ``generate --keep-agreeing`` keeps:
the baseline).
``per-bin``: the same fraction of every area bin (bins at the real training masks' area deciles and quartiles),
the best-agreeing ones of each: a threshold per bin, so a bin the segmenter scores low is not thrown away wholesale.
``real-shaped``: per bin, as many rows as the real masks' share of that bin asks for (the best-agreeing ones, those
at or above ``--floor``); slots a bin cannot fill go to the best-agreeing rows left in any bin.

    python benchmarks/area_select.py --source /tmp/s/unf --real bundled-256 --rule per-bin --keep 900 --out D
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np


def select(rule: str, area: np.ndarray, agreement: np.ndarray, edges: np.ndarray, real_share: np.ndarray,
           keep: int, threshold: float = 0.69, floor: float = 0.0) -> np.ndarray:
    """Positions (into ``area`` / ``agreement``) of the rows kept, in their original order."""
    n = len(area)
    if keep > n:
        sys.exit(f"--keep {keep}: the source has only {n} rows")
    bins = np.clip(np.searchsorted(edges, area, side="right") - 1, 0, len(edges) - 2)
    if rule == "threshold":
        chosen = np.flatnonzero(agreement >= threshold)[:keep]
        if len(chosen) < keep:
            sys.exit(f"only {len(chosen)} rows reach agreement {threshold}; --keep {keep} asks for more")
        return chosen
    order = np.lexsort((np.arange(n), -agreement))  # best agreement first, ties by position
    if rule == "per-bin":
        counts = np.bincount(bins, minlength=len(edges) - 1)
        want = np.floor(counts * keep / n).astype(int)
    else:  # real-shaped
        want = np.floor(real_share * keep).astype(int)
    taken = np.zeros(n, bool)
    for b in range(len(edges) - 1):
        cands = [i for i in order if bins[i] == b and agreement[i] >= (floor if rule == "real-shaped" else -1)]
        taken[cands[: want[b]]] = True
    for i in order:  # slots left (rounding, or bins short of candidates): the best rows left anywhere
        if taken.sum() >= keep:
            break
        taken[i] = True
    return np.flatnonzero(taken)


def write_subset(source: str, positions: np.ndarray, index: np.ndarray, out: str, note: str) -> None:
    """Rows ``index[positions]`` of ``source`` as a one-shard dataset at ``out``, re-indexed 0..K-1."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(os.path.join(source, "data", "*.parquet")))])
    wanted = pa.array(np.asarray(index)[positions].astype(np.int64))
    t = t.filter(pc.is_in(t.column("index").cast(pa.int64()), value_set=wanted))
    t = t.take(pc.sort_indices(t, [("index", "ascending")]))
    t = t.set_column(t.column_names.index("index"), "index", pa.array(range(t.num_rows), t.schema.field("index").type))
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    pq.write_table(t, os.path.join(out, "data", "train-00000.parquet"))
    m = json.load(open(os.path.join(source, "fastsynth.json")))
    m.update(n=t.num_rows, mode=f"{m.get('mode')}; {note}")
    json.dump(m, open(os.path.join(out, "fastsynth.json"), "w"), indent=1)


def small_grid(syn, agreement, area, path, small=0.068) -> None:
    from PIL import Image

    def tile(i):
        im, m = syn.images[i].copy(), syn.masks[i] >= 128
        im[(m ^ np.roll(m, 1, 0)) | (m ^ np.roll(m, 1, 1))] = (0, 255, 0)
        return im

    res = syn.images.shape[1]
    rows = []
    for keep in (lambda a: a < 0.3, lambda a: a >= 0.69):
        picks = [i for i in np.flatnonzero(area < small) if keep(agreement[i])][:8]
        tiles = [tile(i) for i in picks] + [np.zeros((res, res, 3), np.uint8)] * (8 - len(picks))
        rows.append(np.concatenate(tiles, 1))
    Image.fromarray(np.concatenate(rows, 0)).resize((1024, 256)).convert("RGB").save(path, quality=85)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a generated dataset with an agreement column")
    ap.add_argument("--real", required=True, help="model folder or name: its training masks' areas set the bins")
    ap.add_argument("--rule", choices=("threshold", "per-bin", "real-shaped"), required=True)
    ap.add_argument("--keep", type=int, default=900)
    ap.add_argument("--threshold", type=float, default=0.69)
    ap.add_argument("--floor", type=float, default=0.0, help="real-shaped: lowest agreement a bin's row may have")
    ap.add_argument("--out", default=None, help="write the selected rows as a dataset here")
    ap.add_argument("--grid", default=None, help="a picture: the first 8 candidates under area 0.068 with agreement "
                    "< 0.3 (top row) and >= 0.69 (bottom row), their masks outlined in green")
    args = ap.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mask_spread import _agreement, area_edges

    from fastsynth.metrics.io import load_real, load_synthetic, resolve_real
    from fastsynth.metrics.masks import mask_stats

    syn = load_synthetic(args.source)
    agreement = _agreement(args.source, syn.index)
    if agreement is None:
        sys.exit(f"{args.source}: no agreement column (generate it with --keep-agreeing ... --min-agreement 0)")
    src, rset = resolve_real(args.real)
    _, real = load_real(src, syn.masks.shape[-1], rset.train_stems)
    ra, ss = mask_stats(real[:, 3])["area_fraction"], mask_stats(syn.masks)
    edges = area_edges(ra)
    real_share = np.histogram(ra, edges)[0] / len(ra)
    pos = select(args.rule, ss["area_fraction"], agreement, edges, real_share, args.keep, args.threshold, args.floor)
    a, k = ss["area_fraction"][pos], ss["components"][pos]
    out = {"rule": args.rule, "kept": len(pos), "of": len(agreement), "area_mean": float(a.mean()),
           "regions_mean": float(k.mean()), "agreement_mean": float(agreement[pos].mean()),
           "agreement_min": float(agreement[pos].min()),
           "bin_shares": {"real": real_share.round(3).tolist(),
                          "kept": (np.histogram(a, edges)[0] / len(a)).round(3).tolist()}}
    print(json.dumps(out))
    if args.grid:
        small_grid(syn, agreement, ss["area_fraction"], args.grid)
    if args.out:
        write_subset(args.source, pos, syn.index, args.out, f"area_select {args.rule} {len(pos)} of {len(agreement)}")


if __name__ == "__main__":
    sys.exit(main())
