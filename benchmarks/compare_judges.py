"""Side-by-side verdicts of two or more judged synthetic datasets (``fastsynth evaluate --downstream --json``),
protocol by protocol, with the judge's own rule (``metrics.downstream.compare_runs``: a difference is a result
only when it exceeds the largest of the two runs' seed std and the std of the per-seed differences). The runs
must come from the same machine and segmenter settings (segmenter training is not bit-identical across CPUs).

    python benchmarks/compare_judges.py BASELINE.json CANDIDATE.json [CANDIDATE2.json ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastsynth.metrics.downstream import compare_runs

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline")
    ap.add_argument("candidates", nargs="+")
    ap.add_argument("--test", default="heldout")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    base = json.loads(Path(args.baseline).read_text())
    rows = []
    for c in args.candidates:
        cand = json.loads(Path(c).read_text())
        runs_a, runs_b = cand["downstream"]["runs"], base["downstream"]["runs"]
        for p in [p for p in runs_a if "synthetic" in p and p in runs_b]:  # every run that used synthetic data
            a, b = runs_a[p], runs_b[p]
            r = compare_runs(a, b, Path(c).name, Path(args.baseline).name, args.test)
            r.update(protocol=p, candidate_dice=round(a["test"][args.test]["dice"], 4),
                     baseline_dice=round(b["test"][args.test]["dice"], 4),
                     seeds=min(len(a["test"][args.test]["dice_per_seed"]), len(b["test"][args.test]["dice_per_seed"])))
            rows.append(r)
            print(f"{r['candidate']:>28} vs {r['baseline']:<28} {p:<22} {r['candidate_dice']:.3f} vs "
                  f"{r['baseline_dice']:.3f}  {r['dice_delta']:+.4f} (spread {r['spread']:.4f}, {r['seeds']} seeds)  "
                  f"{r['verdict']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": args.baseline, "candidates": args.candidates,
                                               "comparisons": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
