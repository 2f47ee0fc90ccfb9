#!/usr/bin/env bash
# The CPU benchmarks whose results are committed in benchmarks/results/ (run on an otherwise idle machine).
set -euo pipefail
cd "$(dirname "$0")/.."
# 1. throughput per backend and batch size, with both baselines side by side
fastsynth bench --backends eager,onnx,compile --batch-sizes 32,64 --repeats 5 --json benchmarks/results/bench_cpu.json
# 2. quality against NFE for each sampler (sets the default steps)
python benchmarks/quality_vs_nfe.py --n 128 --out benchmarks/results/quality_vs_nfe_cpu.json
# 3. the headline: 10,000 pairs with the bundled model at default settings, wall time and peak memory
rm -rf /tmp/fastsynth-10k
/usr/bin/time -v fastsynth generate --n 10000 --out /tmp/fastsynth-10k --no-progress 2> benchmarks/results/generate_10k_cpu.time.txt | tee benchmarks/results/generate_10k_cpu.txt
# 4. the slow DDPM reference (1000 steps) on 64 pairs
rm -rf /tmp/fastsynth-ddpm
fastsynth generate --n 64 --sampler ddpm --out /tmp/fastsynth-ddpm --no-progress | tee benchmarks/results/generate_ddpm1000_cpu.txt
