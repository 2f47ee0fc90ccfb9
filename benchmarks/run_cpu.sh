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
# downstream segmentation benchmark of the bundled model (README "Downstream segmentation")
rm -rf /tmp/ds/pairs1k
fastsynth generate --n 1000 --out /tmp/ds/pairs1k --no-progress
/usr/bin/time -v fastsynth evaluate /tmp/ds/pairs1k --real fastsynth/bundled --metrics masks --downstream \
  --json benchmarks/results/downstream_bundled_cpu.json
# progressive distillation of the bundled model (16 -> 8 -> 4 -> 2 DDIM steps) and its quality
fastsynth distill --out runs/pd16 --teacher-steps 16 --student-steps 2 --steps-per-round 400 --batch-size 32 --lr 2e-4
python benchmarks/quality_vs_nfe.py --n 128 --reference ddim:16 --out benchmarks/results/distill_quality_cpu.json \
  --grid "ddim:2,4,8,16;unipc:6;distilled@runs/pd16/round-1-8steps:8;distilled@runs/pd16/round-2-4steps:4;distilled@runs/pd16/round-3-2steps:2"
# the distilled student's data on the downstream benchmark
python -m fastsynth.models.bundle runs/pd16/round-2-4steps --as bundled-fast --notes benchmarks/bundled_fast_notes.md
/usr/bin/time -v fastsynth generate --n 10000 --model bundled-fast --out /tmp/fastsynth-10k-fast --no-progress \
  2> benchmarks/results/generate_10k_fast_cpu.time.txt | tee benchmarks/results/generate_10k_fast_cpu.txt
fastsynth generate --n 1000 --model bundled-fast --out /tmp/ds/fast1k --no-progress
fastsynth evaluate /tmp/ds/fast1k --real fastsynth/bundled --metrics masks --downstream \
  --json benchmarks/results/downstream_bundled_fast_cpu.json
