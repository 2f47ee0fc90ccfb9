#!/usr/bin/env bash
# Why does Sunnybrook's data train nothing? (issue 22, point 4). The earlier run (benchmarks/run_cpu.sh, 2026-12-0x):
# 545 steps in 22 min with the then-default recipe; synthetic-only Dice 0.000, agreement 0.151, FID 449.
# Here: the label representation and clean-up on real label maps (no model), then the hippocampus model's recipe
# (64^2, Min-SNR, bf16 autocast, one thread) for 38 min, judged as before. See benchmarks/NOTES.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTSYNTH_DATA=../shared/data HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
DATA=../shared/data/sunnybrook-lv
# 1. real label maps through the model's label channels and the decoding clean-up, and the structures' size
python benchmarks/label_roundtrip.py $DATA --classes background,blood-pool,myocardium --resolution 64 \
  --json benchmarks/results/sunnybrook_label_roundtrip.json
python benchmarks/label_roundtrip.py $DATA --classes background,blood-pool,myocardium --resolution 128 \
  --json benchmarks/results/sunnybrook_label_roundtrip_128.json
# 2. the hippocampus recipe on Sunnybrook's 37 training slices (split by patient as before: seed 0, 20 % held out)
fastsynth train --data $DATA --out runs/sunny64 --classes background,blood-pool,myocardium --resolution 64 \
  --steps 100000 --loss-weighting min-snr --mixed-precision bf16 --checkpoint-every 250 --time-limit 38 \
  --test-fraction 0.2 --seed 0 --no-progress
# 3. the same judge as before: 370 pairs (10x the training slices), 3 segmenter seeds
rm -rf /tmp/sb/pairs
fastsynth generate --n 370 --model runs/sunny64 --out /tmp/sb/pairs --no-progress
fastsynth evaluate /tmp/sb/pairs --real runs/sunny64 --metrics fid,masks,agreement,memorization --fid-reference train \
  --downstream --protocols real,synthetic,real+synthetic --seeds 3 --no-progress \
  --json benchmarks/results/judge_sunnybrook_sunny64_cpu.json
