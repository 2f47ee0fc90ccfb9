#!/usr/bin/env bash
# Latent diffusion at 256^2 (issue 21): the commands behind benchmarks/NOTES.md "latent diffusion at 256^2", in order.
# Nothing here modifies the package (models are bundled by hand, see NOTES.md). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTSYNTH_DATA=../shared/data HF_HUB_OFFLINE=1
DATA=../shared/data/kvasir-seg

# 1. the mask representations, equal budget: three runs side by side, one thread each, 45 min of diffusion training
#    each (the ae run trains its mask autoencoder first: 1500 steps, 7 min); compared at equal optimiser steps
for r in pool s2d ae; do
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 fastsynth train --data $DATA --out runs/lat256-$r --latent taef2 --mask-repr $r \
    --resolution 256 --steps 100000 --loss-weighting min-snr --mixed-precision bf16 --checkpoint-every 250 \
    --time-limit 45 --no-progress &
done
wait
# round trip of the 100 held-out masks through each representation
python benchmarks/mask_round_trip.py --data $DATA --split runs/lat256-pool/split.json \
  --codec runs/lat256-ae/mask_codec.safetensors --out benchmarks/results/mask_round_trip_256_cpu.json
# generated pairs of each at the same step (snapshots of RUN/model taken at every checkpoint: runs/snap/REPR-STEP)
compare() {  # $1 label, $2 model folder
  rm -rf /tmp/cmp/$1
  fastsynth generate --model $2 --n 300 --sampler unipc --steps 8 --no-redraw --out /tmp/cmp/$1 --no-progress
  fastsynth evaluate /tmp/cmp/$1 --real runs/lat256-pool --metrics fid,masks,agreement --fid-reference train \
    --seg-resolution 128 --seeds 3 --json benchmarks/results/latent_repr_$1_cpu.json --no-progress
}
STEP=${STEP:-1250}
for r in pool s2d ae; do compare $r-$STEP runs/snap/$r-$STEP; done

# 2. the winner (pool) continues: --resume with both threads, 58 min more in this session
fastsynth train --data $DATA --out runs/lat256-pool --latent taef2 --mask-repr pool --resolution 256 --steps 100000 \
  --loss-weighting min-snr --mixed-precision bf16 --checkpoint-every 250 --time-limit 58 --resume --no-progress
# its data at the end of the session: 1000 pairs (UniPC x8, one pass, as in the comparison), image statistics and
# label agreement against the same real segmenters
rm -rf /tmp/cmp/pool-final
fastsynth generate --model runs/lat256-pool --n 1000 --sampler unipc --steps 8 --no-redraw --out /tmp/cmp/pool-final \
  --no-progress
fastsynth evaluate /tmp/cmp/pool-final --real runs/lat256-pool --metrics fid,msssim,masks,memorization,agreement \
  --fid-reference train --seg-resolution 128 --seeds 3 --json benchmarks/results/latent_pool_session1_cpu.json \
  --no-progress
# the EMA weights kept for a warm restart (fp16; no optimizer state): benchmarks/weights/lat256-pool/
python -m fastsynth.models.bundle runs/lat256-pool --dest benchmarks/weights/lat256-pool

# ---- session 2 (2026-12-06 afternoon): one thread each for training and measuring, side by side ----
# 3. training continues on one thread (two processes on two cores: 1.0 it/s here against 0.58 when a 1-thread judge
#    shared the cores with a 2-thread training run)
OMP_NUM_THREADS=1 fastsynth train --data $DATA --out runs/lat256-pool --latent taef2 --mask-repr pool --resolution 256 \
  --steps 100000 --loss-weighting min-snr --mixed-precision bf16 --checkpoint-every 250 --time-limit 95 --resume \
  --no-progress &
# 4. the judge at 128^2, step 1: the bundled 64^2 model's default data (900 pairs) upsampled, synthetic-only against
#    real-only (900 each; the real-only segmenters are the cached ones of the agreement metric), 3 seeds, the same 100
#    held-out real images (the 64^2 model and the latent run share the split)
rm -rf /tmp/judge/b64
fastsynth generate --n 900 --out /tmp/judge/b64 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/b64 --real runs/lat256-pool --metrics masks --downstream \
  --protocols real,synthetic --seg-resolution 128 --seeds 3 --no-progress --json benchmarks/results/judge256_b64_upsampled_cpu.json
