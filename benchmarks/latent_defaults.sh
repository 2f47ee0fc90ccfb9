#!/usr/bin/env bash
# Generation defaults of a 256^2 latent model (issue 21): 300 pairs per candidate setting, judged by label agreement
# with the 3 real segmenters at 128^2 (cached from the model's earlier evaluations), KID against the training images
# and mask statistics. Usage: benchmarks/latent_defaults.sh MODEL TAG   (results: benchmarks/results/latent_defaults_TAG_*)
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTSYNTH_DATA=../shared/data HF_HUB_OFFLINE=1
MODEL=$1; TAG=$2; N=${N:-300}
run() {  # $1 name, rest: generate options
  local name=$1; shift
  rm -rf /tmp/ld/$name
  fastsynth generate --model "$MODEL" --n "$N" "$@" --out /tmp/ld/$name --backend onnx --precision fp32 --no-progress
  fastsynth evaluate /tmp/ld/$name --real "$MODEL" --metrics fid,masks,agreement --fid-reference train \
    --seg-resolution 128 --seeds 3 --json benchmarks/results/latent_defaults_${TAG}_$name.json --no-progress
}
mkdir -p /tmp/ld
run unipc8 --sampler unipc --steps 8 --no-redraw
run unipc4-cond1.5 --sampler unipc --steps 4 --condition-at 1.5
run unipc8-cond1.5 --sampler unipc --steps 8 --condition-at 1.5
run unipc6-redraw-g2 --sampler unipc --steps 6 --redraw
run unipc12 --sampler unipc --steps 12 --no-redraw
run dpmpp8 --sampler dpmpp --steps 8 --no-redraw
python - "$TAG" <<'PY'
import json, sys, glob
print("| setting | agreement (3 segmenters) | KID | regions / mask | area |")
print("|---|---|---|---|---|")
for f in sorted(glob.glob(f"benchmarks/results/latent_defaults_{sys.argv[1]}_*.json")):
    d = json.load(open(f)); a = d["agreement"]; m = d["masks"]["synthetic"]
    name = f.split(f"latent_defaults_{sys.argv[1]}_")[1][:-5]
    print(f"| {name} | {a['dice']:.3f} ± {a['dice_seed_std']:.3f} | {d['fid_kid']['kid']:.3f} | "
          f"{m['components_mean']:.2f} | {m['area_fraction_mean']:.3f} |")
PY
