#!/usr/bin/env bash
# The CPU benchmarks whose results are committed in benchmarks/results/ (run on an otherwise idle machine,
# in this order, with the bundled model). See README.md "Measured numbers".
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/quality_vs_nfe.py --n 128 --grid "dpmpp:4,6,8,12,20,50;unipc:4,6,8,12;ddim:20,50;ddpm:200" \
  --out benchmarks/results/quality_vs_nfe_cpu.json
fastsynth bench --backends eager,onnx --batch-sizes 64 --repeats 3 --json benchmarks/results/bench_cpu.json
rm -rf /tmp/fastsynth-10k
/usr/bin/time -v fastsynth generate --n 10000 --out /tmp/fastsynth-10k --no-progress \
  2> benchmarks/results/generate_10k_cpu.time.txt | tee benchmarks/results/generate_10k_cpu.txt
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
