#!/usr/bin/env bash
# The CPU benchmarks whose results are committed in benchmarks/results/ (run on an otherwise idle machine,
# in this order, with the bundled model). See README.md "Measured numbers".
set -euo pipefail
cd "$(dirname "$0")/.."
# A replay never touches this checkout: the commands below restore old models and re-bundle them, so they run in a
# private worktree of HEAD (its fastsynth package first on PYTHONPATH), and its results stay there to compare
# with the committed ones (printed at the end). Runs (runs/) and temporaries go there too.
SRC=$(pwd)
ROOT=$(mktemp -d /tmp/fastsynth-replay.XXXXXX)
REPLAY="$ROOT/main"
git worktree add --detach "$REPLAY" HEAD >/dev/null
[ -e "$SRC/../shared" ] && ln -s "$(cd "$SRC/../shared" && pwd)" "$ROOT/shared"  # ../shared/data as in a checkout
cd "$REPLAY"
export PYTHONPATH="$REPLAY${PYTHONPATH:+:$PYTHONPATH}"
fastsynth() { python -m fastsynth "$@"; }
trap 'echo "replay results: $REPLAY/benchmarks/results (compare with $SRC/benchmarks/results)"' EXIT
# models record their training data by name (kvasir-seg); --real fastsynth/bundled and distill look it up here
export FASTSYNTH_DATA=../shared/data
# The commands down to "the winner continued" ran with the PREVIOUS bundled model (3825 steps, weights sha256
# 1b908a561fab...); restore it first (the bundle commands below replace it again, in order), and give the
# settings that were the defaults then (one pass: --no-redraw; the single-seed UNet++/resnet34 segmenter).
git checkout 3b3b79e -- fastsynth/bundled
SEG_THEN=(--seeds 1 --seg-arch unetplusplus --seg-encoder resnet34 --seg-encoder-depth 5 --protocols real,synthetic,real+synthetic)
python benchmarks/quality_vs_nfe.py --n 128 --grid "dpmpp:4,6,8,12,20,50;unipc:4,6,8,12;ddim:20,50;ddpm:200" \
  --out benchmarks/results/quality_vs_nfe_cpu.json
fastsynth bench --backends eager,onnx --batch-sizes 64 --repeats 3 --json benchmarks/results/bench_cpu.json
rm -rf /tmp/fastsynth-10k
/usr/bin/time -v fastsynth generate --n 10000 --no-redraw --out /tmp/fastsynth-10k --no-progress \
  2> benchmarks/results/generate_10k_cpu.time.txt | tee benchmarks/results/generate_10k_cpu.txt
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
# downstream segmentation benchmark of the bundled model (README "Downstream segmentation")
rm -rf /tmp/ds/pairs1k
fastsynth generate --n 1000 --no-redraw --out /tmp/ds/pairs1k --no-progress
/usr/bin/time -v fastsynth evaluate /tmp/ds/pairs1k --real fastsynth/bundled --metrics masks --downstream "${SEG_THEN[@]}" \
  --json benchmarks/results/downstream_bundled_cpu.json
# progressive distillation of the bundled model (16 -> 8 -> 4 -> 2 DDIM steps) and its quality
fastsynth distill --out runs/pd16 --teacher-steps 16 --student-steps 2 --steps-per-round 400 --batch-size 32 --lr 2e-4
python benchmarks/quality_vs_nfe.py --n 128 --reference ddim:16 --out benchmarks/results/distill_quality_cpu.json \
  --grid "ddim:2,4,8,16;unipc:6;distilled@runs/pd16/round-1-8steps:8;distilled@runs/pd16/round-2-4steps:4;distilled@runs/pd16/round-3-2steps:2"
# the distilled student's data on the downstream benchmark
python -m fastsynth.models.bundle runs/pd16/round-2-4steps --as bundled-fast --notes benchmarks/bundled_fast_notes.md
/usr/bin/time -v fastsynth generate --n 10000 --model bundled-fast --no-redraw --out /tmp/fastsynth-10k-fast --no-progress \
  2> benchmarks/results/generate_10k_fast_cpu.time.txt | tee benchmarks/results/generate_10k_fast_cpu.txt
fastsynth generate --n 1000 --model bundled-fast --no-redraw --out /tmp/ds/fast1k --no-progress
fastsynth evaluate /tmp/ds/fast1k --real fastsynth/bundled --metrics masks --downstream "${SEG_THEN[@]}" \
  --json benchmarks/results/downstream_bundled_fast_cpu.json
# --- issue 8: the judge, the noise diagnosis, the recipe study and the new bundled model ---------------------------
# recipe study: two warm starts from the previous bundled model, side by side, 35 min each on one thread
OMP_NUM_THREADS=1 fastsynth train --data ../shared/data/kvasir-seg --out runs/armA-v --init-from bundled --lr 3e-4 \
  --steps 20000 --checkpoint-every 250 --time-limit 35 --no-progress &
OMP_NUM_THREADS=1 fastsynth train --data ../shared/data/kvasir-seg --out runs/armB-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --time-limit 35 --no-progress &
wait
mkdir -p runs/study && cp -r runs/armA-v/model runs/study/armA-v-771 && cp -r runs/armB-minsnr/model runs/study/armB-minsnr-766
python benchmarks/recipe_study.py --n 128 --agreement --models bundled,runs/study/armA-v-771,runs/study/armB-minsnr-766 \
  --labels 'bundled (3825 steps);arm A: +771 steps v-loss;arm B: +766 steps min-SNR-5' --out benchmarks/results/recipe_study_cpu.json
for g in 1 2 3; do
  python benchmarks/recipe_study.py --n 128 --agreement --redraw --guidance $g --models runs/study/armB-minsnr-766 \
    --labels "arm B, redraw, guidance $g" --out benchmarks/results/recipe_study_redraw_g$g.json
done
python benchmarks/noise_diagnosis.py --models bundled,runs/armA-v,runs/study/armB-minsnr-766 --n 16 \
  --samplers unipc:6,ddim:50 --ddpm --out benchmarks/results/noise_diagnosis_cpu.json
# judge of the study model: one pass vs redraw with guidance 2 (synthetic-only protocol, 3 seeds)
fastsynth generate --n 900 --model runs/study/armB-minsnr-766 --no-redraw --out /tmp/j/B766-pairs --backend eager --no-progress
fastsynth generate --n 900 --model runs/study/armB-minsnr-766 --redraw --guidance 2 --out /tmp/j/B766-redraw2 --backend eager --no-progress
for d in pairs:B766-pairs redraw_g2:B766-redraw2; do
  fastsynth evaluate /tmp/j/${d#*:} --real fastsynth/bundled --metrics hf --downstream --protocols real,synthetic \
    --json benchmarks/results/judge_study_armB766_${d%%:*}_cpu.json
done
# the previous bundled model's one-pass data through the judge (README: "The previous bundled model ..., same judge")
fastsynth generate --n 900 --no-redraw --out /tmp/j/bundled-pairs --no-progress
fastsynth evaluate /tmp/j/bundled-pairs --real fastsynth/bundled --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --json benchmarks/results/judge_previous_bundled_cpu.json
# the winner continued (resume), then bundled (fp16) with its provenance
fastsynth train --data ../shared/data/kvasir-seg --out runs/armB-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --time-limit 80 --no-progress --resume
python -m fastsynth.models.bundle runs/armB-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md
# the judge of the bundled model's default data
fastsynth generate --n 900 --out /tmp/judge/redraw --no-progress | tee benchmarks/results/generate_900_default_cpu.txt
fastsynth evaluate /tmp/judge/redraw --real fastsynth/bundled --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --json benchmarks/results/judge_bundled_5629_cpu.json
python -m fastsynth.models.bundle runs/armB-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md \
  --evaluation benchmarks/results/judge_bundled_5629_cpu.json
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
python benchmarks/sample_grid.py --modes --n 8 --out benchmarks/results/samples_modes.png

# --- session of 2026-12-02 (AVX2-only EPYC): a warm restart of the bundled model, and two other modalities -------
# polyps: a warm restart from the committed weights (runs/ did not survive), Min-SNR-5, 1 thread beside other jobs
fastsynth train --data ../shared/data/kvasir-seg --out runs/armC-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --time-limit 100 --no-progress --seed 3
fastsynth generate --n 900 --model runs/armC-minsnr --out /tmp/j/armC --no-progress | tee benchmarks/results/generate_900_armC_cpu.txt
# (the full judge did not fit in the session beside the other two: agreement and the synthetic-only protocol)
fastsynth evaluate /tmp/j/armC --real runs/armC-minsnr --metrics agreement --downstream --protocols real,synthetic \
  --json benchmarks/results/judge_armC_cpu.json
# HC18 fetal-head ultrasound (8-bit grey, binary; split by examination), from scratch: 55 min, then 35 more (--resume)
fastsynth train --data ../shared/data/hc18-ultrasound --out runs/hc18 --lr 3e-4 --loss-weighting min-snr \
  --steps 20000 --checkpoint-every 250 --time-limit 55 --no-progress --seed 0
fastsynth train --data ../shared/data/hc18-ultrasound --out runs/hc18 --lr 3e-4 --loss-weighting min-snr \
  --steps 20000 --checkpoint-every 250 --time-limit 35 --no-progress --seed 0 --resume
fastsynth generate --n 727 --model runs/hc18 --out /tmp/j/hc18 --no-progress
# (time: 2 segmenter seeds, no FID this session)
fastsynth evaluate /tmp/j/hc18 --real runs/hc18 --metrics masks,agreement --seeds 2 --downstream \
  --protocols real,synthetic --json benchmarks/results/judge_ultrasound_cpu.json
# Sunnybrook LV (16-bit grey, 3-class label maps; split by patient, 20 % held out), from scratch, 22 min
fastsynth train --data ../shared/data/sunnybrook-lv --out runs/sunnybrook --classes background,blood-pool,myocardium \
  --lr 3e-4 --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --time-limit 22 --test-fraction 0.2 \
  --no-progress --seed 0
fastsynth generate --n 370 --model runs/sunnybrook --out /tmp/j/sunnybrook --no-progress
fastsynth evaluate /tmp/j/sunnybrook --real runs/sunnybrook --metrics fid,masks,agreement,memorization \
  --fid-reference train --downstream --protocols real,synthetic,real+synthetic \
  --json benchmarks/results/judge_sunnybrook_cpu.json
python benchmarks/sample_grid.py --model bundled-ultrasound --modes --n 8 --out benchmarks/results/samples_ultrasound.png
python benchmarks/sample_grid.py --model runs/sunnybrook --modes --n 8 --out benchmarks/results/samples_sunnybrook.png

# --- session of 2026-12-02, afternoon (AVX-512 + AVX512_BF16 + VNNI EPYC, no AMX) -----------------------------
# training throughput: fp32 vs bf16 autocast, 30 steps each, 1 thread (benchmarks/results/train_precision_cpu.json)
OMP_NUM_THREADS=1 fastsynth train --data ../shared/data/kvasir-seg --out /tmp/tt-no --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 30 --mixed-precision no
OMP_NUM_THREADS=1 fastsynth train --data ../shared/data/kvasir-seg --out /tmp/tt-bf16 --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 30 --mixed-precision bf16
# polyps: a warm restart from the committed weights (runs/ did not survive), Min-SNR-5, bf16 autocast, 1 thread
OMP_NUM_THREADS=1 fastsynth train --data ../shared/data/kvasir-seg --out runs/armD-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --mixed-precision bf16 --time-limit 90 --no-progress
# bf16 on the CPU: the data-level half of its gate on the (previous) bundled model
OMP_NUM_THREADS=1 python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \
  --out /tmp/bf16-judge --json benchmarks/results/bf16_judge_bundled_15477_cpu.json --record
# resumed on 2 threads alone (SIGTERM checkpoints): 9848 steps in all for this run
OMP_NUM_THREADS=2 fastsynth train --data ../shared/data/kvasir-seg --out runs/armD-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 20000 --checkpoint-every 250 --mixed-precision bf16 --time-limit 30 --no-progress --resume
python -m fastsynth.models.bundle runs/armD-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md
# the judge of its default data (real-only and low-data-64 segmenters come from the cache, same settings)
OMP_NUM_THREADS=1 fastsynth generate --n 900 --out /tmp/judge/D --precision fp32 --no-progress | tee benchmarks/results/generate_900_judge_cpu.txt
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/D --real fastsynth/bundled --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --no-progress --json benchmarks/results/judge_bundled_15477_cpu.json
# two variants side by side: one region per mask, and images for the training split's own masks
OMP_NUM_THREADS=1 fastsynth generate --n 900 --out /tmp/judge/D-mc1 --precision fp32 --max-components 1 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/D-mc1 --real fastsynth/bundled --metrics masks,hf,agreement \
  --downstream --protocols real,synthetic,real+synthetic --no-progress --json benchmarks/results/judge_bundled_15477_max_components_1_cpu.json
# (TRAIN_MASKS: a folder of the 900 training-split masks of fastsynth/bundled/split.json, links to the real files)
OMP_NUM_THREADS=1 fastsynth generate --mode from-masks --masks TRAIN_MASKS --n 900 --out /tmp/judge/D-fm --precision fp32 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/D-fm --real fastsynth/bundled --metrics masks,hf,agreement \
  --downstream --protocols real,synthetic,real+synthetic --no-progress --json benchmarks/results/judge_bundled_15477_from_train_masks_cpu.json
python -m fastsynth.models.bundle runs/armD-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md \
  --evaluation benchmarks/results/judge_bundled_15477_cpu.json
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
python benchmarks/sample_grid.py --modes --n 8 --out benchmarks/results/samples_modes.png
# bf16 data level of the current bundled model, and its records shipped in fastsynth/bundled/gates/
OMP_NUM_THREADS=1 python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \
  --out /tmp/bf16-judge-D --json benchmarks/results/bf16_judge_15477_cpu.json --record --ship
# the defaults (auto: OpenVINO bf16 here) against fp32, side by side, 2 threads, nothing else running
fastsynth generate --n 900 --out /tmp/g900 --no-progress
fastsynth generate --n 900 --out /tmp/g900f --precision fp32 --no-progress
/usr/bin/time -v fastsynth generate --n 10000 --out /tmp/fastsynth-10k --no-progress \
  > benchmarks/results/generate_10k_bf16_cpu.txt 2> benchmarks/results/generate_10k_bf16_cpu.time.txt

# ---- session of 2026-12-02, evening: runs/armD-minsnr survived, so the bundled model's run continues (--resume) ----
# the run's warm-start record now lives in runs/armD-minsnr/init.json (written by hand for this run, which began
# before train wrote it: the training.init of the model it started from, the 5629-step bundled model)
OMP_NUM_THREADS=2 fastsynth train --data ../shared/data/kvasir-seg --out runs/armD-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps 60000 --checkpoint-every 250 --mixed-precision bf16 --time-limit 107 --no-progress --resume
# a zero-step resume re-exports runs/armD-minsnr/model with the corrected warm-start record (STEP: the last step)
OMP_NUM_THREADS=2 fastsynth train --data ../shared/data/kvasir-seg --out runs/armD-minsnr --init-from bundled --lr 3e-4 \
  --loss-weighting min-snr --steps STEP --checkpoint-every 250 --mixed-precision bf16 --no-progress --resume
python -m fastsynth.models.bundle runs/armD-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md
# side by side, 1 thread each: the judge of the default data, and the bf16 gate. The gate REJECTED bf16 (KID better by
# 0.0023, tolerance 0.0007), so the candidate was not kept as bundled: fastsynth/bundled was restored from git and
# the results were renamed *_candidate_32423_cpu.json (the judge is judge_bundled_guidance_every_step_cpu.json now:
# the next session bundled this model with another default)
OMP_NUM_THREADS=1 fastsynth generate --n 900 --out /tmp/judge/E --precision fp32 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/E --real fastsynth/bundled --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --no-progress --json benchmarks/results/judge_bundled_guidance_every_step_cpu.json
OMP_NUM_THREADS=1 python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \
  --out /tmp/bf16-judge-E --json benchmarks/results/bf16_judge_bundled_guidance_every_step_cpu.json --record --ship
# one region per mask, and --guidance-interval 0.28,5.42, side by side, 1 thread each (they did run: their results
# were found in /tmp by the next session, with the candidate's sha256 in them, and committed there)
fastsynth generate --n 900 --out /tmp/judge/E-mc1 --precision fp32 --max-components 1 --no-progress
fastsynth evaluate /tmp/judge/E-mc1 --real fastsynth/bundled --metrics fid,masks,hf,agreement --fid-reference train \
  --downstream --protocols real,synthetic,real+synthetic --no-progress --json /tmp/judge_mc1_new.json
# (copied to benchmarks/results/judge_bundled_max_components_1_cpu.json)
fastsynth generate --n 900 --out /tmp/judge/E-gi --precision fp32 --guidance-interval 0.28,5.42 --no-progress
fastsynth evaluate /tmp/judge/E-gi --real fastsynth/bundled --metrics fid,masks,hf,agreement --fid-reference train \
  --downstream --protocols real,synthetic,real+synthetic --no-progress --json /tmp/judge_gi_new.json
# mask regions against solver steps (first pass only, 128 pairs, the 15,477-step model): components per mask
# unipc 6: 1.51, unipc 12: 1.41, ddim 50: 1.31 (real: 1.06); more steps help a little, the model is the cause
fastsynth generate --n 128 --no-redraw --sampler unipc --steps 6 --precision fp32 --format png --out /tmp/mc/unipc6

# ---- session of 2026-12-02, night: the 32,423-step model bundled with the guidance interval as the default ----
# the interval's data, all protocols (real-only and low-data-64 segmenters and the synthetic runs come from the cache)
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/E-gi --real runs/armD-minsnr --metrics masks --downstream \
  --protocols low-data --no-progress --json /tmp/judge_gi_low64.json
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/E-gi --real runs/armD-minsnr --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --no-progress --json benchmarks/results/judge_bundled_cpu.json
# the bf16 data-level gate with the new rule (4 fp32 seeds, 95% prediction interval) and the new defaults
OMP_NUM_THREADS=1 python benchmarks/precision_judge.py --model runs/armD-minsnr --precision bf16 --backend openvino \
  --n 900 --fp32-seeds 4 --out /tmp/bf16-judge-F --json benchmarks/results/bf16_judge_cpu.json
# bundle, then record and ship the gate (the kept metrics are reused: no new generation or evaluation)
python -m fastsynth.models.bundle runs/armD-minsnr --training-data-from bundled --notes benchmarks/bundled_model_notes.md \
  --evaluation benchmarks/results/judge_bundled_cpu.json
python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 --fp32-seeds 4 \
  --out /tmp/bf16-judge-F --json benchmarks/results/bf16_judge_cpu.json --record --ship
# bundled-fast again, from this model
OMP_NUM_THREADS=1 fastsynth distill --model runs/armD-minsnr --out runs/pdF --teacher-steps 16 --student-steps 4 \
  --steps-per-round 400 --batch-size 32 --lr 2e-4
# the student's default data through the same judge (NOT shipped: synthetic-only 0.550 vs the teacher's 0.621)
OMP_NUM_THREADS=1 fastsynth generate --n 900 --model runs/pdF --out /tmp/judge/F-fast --precision fp32 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/judge/F-fast --real runs/armD-minsnr --metrics fid,masks,hf,agreement,memorization \
  --fid-reference train --downstream --no-progress --json benchmarks/results/judge_fast_pdF_cpu.json
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
python benchmarks/sample_grid.py --modes --n 8 --out benchmarks/results/samples_modes.png
# 10,000 pairs with the defaults (auto: OpenVINO bf16 behind the shipped gate), 2 threads, nothing else running
/usr/bin/time -v fastsynth generate --n 10000 --out /tmp/fastsynth-10k-G --no-progress \
  > benchmarks/results/generate_10k_bf16_cpu.txt 2> benchmarks/results/generate_10k_bf16_cpu.time.txt

# ---- session of 2026-12-03: an Intel Xeon with AMX (AMX-BF16/INT8, AVX512_BF16, VNNI) ----
# all CPU backends side by side (2 threads, nothing else running); peaks measured per precision
fastsynth bench --backends onnx,eager,eager:bf16,openvino,openvino:bf16,onnx:int8,openvino:int8 --batch-sizes 64 \
  --repeats 7 --json benchmarks/results/bench_amx_cpu.json
# the README's generate step from an empty cache (the ONNX export included)
FASTSYNTH_CACHE=$(mktemp -d) /usr/bin/time -v fastsynth generate --n 10000 --out /tmp/gen10k \
  > /tmp/gen10k.txt 2> benchmarks/results/generate_10k_amx_cpu.time.txt
# cool-down of the bundled model: warm start, cosine learning rate from 2e-4 to 0 over 10,000 steps (bf16 autocast)
fastsynth train --data ../shared/data/kvasir-seg --out runs/armE-cooldown --init-from bundled --lr 2e-4 \
  --lr-schedule cosine --loss-weighting min-snr --steps 10000 --checkpoint-every 1000 --mixed-precision bf16 \
  --time-limit 50 --no-progress
# the cool-down's judge and the bundled model's, side by side on this machine (segmenters cached between them)
fastsynth generate --n 900 --model runs/armE-cooldown/model --out /tmp/ag/armE-base --precision fp32 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/ag/armE-base --real runs/armE-cooldown \
  --metrics fid,masks,hf,agreement,memorization --fid-reference train --downstream --no-progress \
  --json benchmarks/results/judge_armE_cooldown_cpu.json
fastsynth generate --n 900 --out /tmp/ag/bundled-base --precision fp32 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/ag/bundled-base --real runs/armE-cooldown --metrics masks,agreement \
  --downstream --no-progress --json benchmarks/results/judge_bundled_amx_cpu.json
# its bf16 gate (after `python -m fastsynth.models.bundle runs/armE-cooldown --training-data-from bundled` in the
# working tree, reverted afterwards): data level passes, output level fails on mask IoU (0.945 < 0.95)
OMP_NUM_THREADS=1 python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \
  --fp32-seeds 4 --out /tmp/bf16-judge-H --json benchmarks/results/bf16_judge_armE_cooldown_cpu.json --record
# autoguidance screen (FID/KID/masks of 900 pairs per arm; weak models from git history, e.g.
# git show 4c134b7:fastsynth/bundled/model.safetensors, with its config.json, fastsynth.json and split.json)
fastsynth generate --n 900 --model runs/armE-cooldown/model --out /tmp/ag/armE-agbundled-2 --precision fp32 \
  --autoguide fastsynth/bundled --autoguide-scale 2 --no-progress
fastsynth evaluate /tmp/ag/armE-agbundled-2 --real fastsynth/bundled --metrics fid,masks,hf --fid-reference train \
  --no-progress --json /tmp/ag/armE-agbundled-2.json
# a 3x longer distillation of the bundled model, judged (real and synthetic protocols)
fastsynth distill --model bundled --data ../shared/data/kvasir-seg --out runs/pdG --teacher-steps 16 --student-steps 4 \
  --steps-per-round 1200 --batch-size 32 --lr 2e-4 --time-limit 22 --no-progress
fastsynth generate --n 900 --model runs/pdG --out /tmp/judge/G-fast --precision fp32 --no-progress
fastsynth evaluate /tmp/judge/G-fast --real runs/armE-cooldown --metrics fid,masks,agreement --fid-reference train \
  --downstream --protocols real,synthetic --no-progress --json benchmarks/results/judge_fast_pdG_cpu.json

# 2026-12-03 (second session, AMX machine): the student's bf16 gate (shipped in fastsynth/bundled_fast/gates)
python benchmarks/precision_judge.py --model bundled-fast --precision bf16 --backend openvino --n 900 --fp32-seeds 4 \
  --out /tmp/bf16-judge-fast --json benchmarks/results/bf16_judge_bundled_fast_cpu.json --record --ship
# the student in one pass (4 evaluations per pair), judged
fastsynth generate --n 900 --model bundled-fast --out /tmp/judge/G-fast-plain --precision fp32 --no-redraw --no-progress
fastsynth evaluate /tmp/judge/G-fast-plain --real runs/armE-cooldown --metrics fid,masks,agreement --fid-reference train \
  --downstream --no-progress --json benchmarks/results/judge_fast_pdG_onepass_cpu.json
# teacher vs student with 5 segmenter seeds (seeds 0-2 come from the cache), side by side
for pair in "bundled_base:/tmp/ag/bundled-base" "fast_redraw:/tmp/judge/G-fast" "fast_plain:/tmp/judge/G-fast-plain"; do
  fastsynth evaluate ${pair#*:} --real runs/armE-cooldown --metrics masks,agreement --downstream --seeds 5 --no-progress \
    --json benchmarks/results/judge5_${pair%%:*}_amx_cpu.json
done
python benchmarks/compare_judges.py benchmarks/results/judge5_bundled_base_amx_cpu.json \
  benchmarks/results/judge5_fast_redraw_amx_cpu.json benchmarks/results/judge5_fast_plain_amx_cpu.json \
  --json benchmarks/results/teacher_vs_student_5seeds_amx_cpu.json
# 10,000 pairs with the student (auto: OpenVINO bf16 from its shipped gate), with and without the redraw
/usr/bin/time -v fastsynth generate --n 10000 --model bundled-fast --out /tmp/gen10k-fast --no-progress
/usr/bin/time -v fastsynth generate --n 10000 --model bundled-fast --no-redraw --out /tmp/gen10k-fast1 --no-progress

# 2026-12-06 (AMX machine): one pass with a late mask-conditioned finish (--condition-at), screened against the
# default and the one-pass data (FID/KID, masks, grain; then label agreement and the downstream judge, 5 seeds)
for spec in "L-t6-c1.2:--condition-at 1.2" "L-t6-c2:--condition-at 2.0" "L-t4-c1.5:--steps 4 --condition-at 1.5" \
            "L-s4-c1.5:--model bundled-fast --condition-at 1.5" \
            "L-s4-c1.5-g1:--model bundled-fast --condition-at 1.5 --guidance 1" \
            "L-t4-c1.5-g1:--steps 4 --condition-at 1.5 --guidance 1" "T-u4-plain:--steps 4 --no-redraw"; do
  fastsynth generate --n 900 --out /tmp/judge/${spec%%:*} --precision fp32 --no-progress ${spec#*:}
  fastsynth evaluate /tmp/judge/${spec%%:*} --real fastsynth/bundled --metrics fid,masks,hf --fid-reference train \
    --no-progress --json /tmp/j/fid_${spec%%:*}.json
done
# the three sets judged downstream side by side (5 segmenter seeds), then compared
fastsynth generate --n 900 --out /tmp/judge/D-default --precision fp32 --steps 6 --redraw --no-progress  # the old default
for d in D-default:default16 T-u4-plain:unipc4_onepass L-t4-c1.5-g1:unipc4_condition_at; do
  fastsynth evaluate /tmp/judge/${d%%:*} --real fastsynth/bundled --metrics fid,masks,hf,agreement --fid-reference train \
    --downstream --seeds 5 --no-progress --json benchmarks/results/judge5_${d#*:}_amx_cpu.json
done
python benchmarks/compare_judges.py benchmarks/results/judge5_default16_amx_cpu.json \
  benchmarks/results/judge5_unipc4_onepass_amx_cpu.json benchmarks/results/judge5_unipc4_condition_at_amx_cpu.json \
  --json benchmarks/results/four_evaluations_5seeds_amx_cpu.json
# the bf16 gate of the bundled model re-measured with its new default (4 evaluations), shipped
python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 --fp32-seeds 4 \
  --out /tmp/bf16-judge-u4 --json benchmarks/results/bf16_judge_bundled_4eval_cpu.json --record --ship
python benchmarks/sample_grid.py --n 24 --out benchmarks/results/samples.png
python benchmarks/sample_grid.py --modes --n 8 --out benchmarks/results/samples_modes.png
# ---- 2026-12-07: synthetic-then-real (pretrain on synthetic, fine-tune on real) against mixing, 300 and 600 steps ----
rm -rf /tmp/rs/b64
fastsynth generate --n 900 --out /tmp/rs/b64 --no-progress
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/rs/b64 --real fastsynth/bundled --metrics masks --downstream \
  --protocols real,real+synthetic,synthetic-then-real --seeds 3 --no-progress \
  --json benchmarks/results/realsynth_b64_300steps_cpu.json
OMP_NUM_THREADS=1 fastsynth evaluate /tmp/rs/b64 --real fastsynth/bundled --metrics masks --downstream \
  --protocols real,real+synthetic --seg-steps 600 --seeds 3 --no-progress \
  --json benchmarks/results/realsynth_b64_600steps_cpu.json
