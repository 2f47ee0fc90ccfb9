#!/usr/bin/env bash
# Generation settings of the hippocampus model (issue 22): 900 pairs per candidate, judged by per-class label agreement
# with the model's 3 real segmenters (64^2, cached after the first candidate) and by mask statistics; the best ones then
# go to the downstream judge (benchmarks/run_hippocampus.sh step 2). One thread, beside other work.
# Run: benchmarks/hippocampus_defaults.sh MODEL TAG   (2026-12-06: runs/hippo64 at step 33417, TAG 33417)
# Usage: benchmarks/hippocampus_defaults.sh MODEL TAG   (results: benchmarks/results/hippocampus_defaults_TAG_*.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTSYNTH_DATA=../shared/data HF_HUB_OFFLINE=1
MODEL=$1; TAG=$2; N=${N:-900}
run() {  # $1 name, rest: generate options
  local name=$1; shift
  rm -rf /tmp/hd/$name
  fastsynth generate --model "$MODEL" --n "$N" "$@" --out /tmp/hd/$name --no-progress
  fastsynth evaluate /tmp/hd/$name --real "$MODEL" --metrics masks,agreement --seeds 3 --no-progress \
    --json benchmarks/results/hippocampus_defaults_${TAG}_$name.json
}
mkdir -p /tmp/hd
run default
run unipc12 --sampler unipc --steps 12 --no-redraw
run unipc8-cond1.5 --sampler unipc --steps 8 --condition-at 1.5
run unipc6-redraw-g2-all --sampler unipc --steps 6 --redraw --guidance 2 --guidance-interval all
run unipc6-redraw-g3 --sampler unipc --steps 6 --redraw --guidance 3
run dpmpp12 --sampler dpmpp --steps 12 --no-redraw
run unipc20 --sampler unipc --steps 20 --no-redraw
run unipc32 --sampler unipc --steps 32 --no-redraw
python - "$TAG" <<'PY'
import json, sys, glob
print("| setting | agreement (3 segmenters) | per class | empty masks | area (real) |")
print("|---|---|---|---|---|")
for f in sorted(glob.glob(f"benchmarks/results/hippocampus_defaults_{sys.argv[1]}_*.json")):
    d = json.load(open(f)); a = d["agreement"]; m = d["masks"]
    name = f.split(f"hippocampus_defaults_{sys.argv[1]}_")[1][:-5]
    per = ", ".join(f"{k} {v:.3f}" for k, v in a.get("dice_per_class", {}).items())
    print(f"| {name} | {a['dice']:.3f} ± {a['dice_seed_std']:.3f} | {per} | "
          f"{m['synthetic']['empty_fraction']:.2f} ({m['real']['empty_fraction']:.2f}) | "
          f"{m['synthetic']['area_fraction_mean']:.3f} ({m['real']['area_fraction_mean']:.3f}) |")
PY
