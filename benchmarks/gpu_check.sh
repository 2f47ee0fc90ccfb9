#!/usr/bin/env bash
# One call on a machine with one CUDA GPU proves (or disproves) every GPU claim, in about 8 minutes:
#
#     bash benchmarks/gpu_check.sh            # from the repository root
#
# Steps (each with its own timeout, cut to what is left of the budget; a failing step is recorded and the
# script goes on):
#   probe / install   what is importable; best-effort install of the gpu-test extra's missing pieces
#                     (never next to the CPU onnxruntime: onnxruntime-gpu goes to its own --target folder)
#   pytest_gpu        pytest -m gpu (tests/test_gpu.py, tests/test_runtime.py; torch.compile in parity_compile)
#   parity            every backend (eager, onnx CUDA, tensorrt; compile last) x fp32/bf16/fp16 vs eager fp32
#   bench_64          fastsynth bench, bundled model (64x64), eager / onnx / tensorrt
#   generate_10k      10,000 pairs with the bundled model (tensorrt, falling back to an eager run if it fails)
#   generate_2proc    the same settings, 2,000 pairs by 2 processes (RANK / WORLD_SIZE) on the same GPU,
#                     compared row by row with the single-process run
#   bench_256_*       fastsynth bench --preset paper --resolution 256 (random weights), eager bf16 and tensorrt
#   bench_256_latent  a random-weight latent model at 256^2: denoiser and TAEF2 decoder apart, eager and tensorrt
#   generate_10k_latent  10,000 pairs at 256^2 from it (tensorrt; goal <= 30 s on one H100)
#   generate_10k_bundled256  10,000 pairs from bundled-256 with its defaults (the label-agreement filter included)
#   parity_compile    torch.compile (max-autotune) x fp32/bf16/fp16, with the time left
# Results: one JSON per step under $OUT (if set) or benchmarks/results/gpu/, step-NAME.json with status,
# exit code, seconds and the log's tail, NAME.log, and summary.json. Environment knobs: PYTHON (interpreter),
# GPU_CHECK_BUDGET_S (default 470), GPU_CHECK_NO_INSTALL=1, GPU_CHECK_WORK (scratch folder).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=${OUT:-$ROOT/benchmarks/results/gpu}
mkdir -p "$RESULTS"
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}
START=$(date +%s)
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/fastsynth-gpu-check.XXXXXX)}
mkdir -p "$WORK"
export FASTSYNTH_CACHE=$WORK/cache            # a fresh cache: first-run export / engine builds are counted
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}   # runs from the checkout, installed or not
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
H=benchmarks/gpu_check_helpers.py
PIP=("$PY" -m pip install --disable-pip-version-check --retries 0 --timeout 15 -q)
echo "gpu_check: python $PY, results in $RESULTS, scratch $WORK, budget ${BUDGET_S}s"

remaining() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

record() {  # record NAME STATUS RC SECONDS TIMEOUT NOTE  -> $RESULTS/step-NAME.json
  "$PY" - "$RESULTS" "$@" <<'EOF' 2>/dev/null || echo "{\"name\": \"$1\", \"status\": \"$2\"}" >"$RESULTS/step-$1.json"
import json, sys
from pathlib import Path
d, name, status, rc, secs, tmo, note = sys.argv[1:8]
log = Path(d) / f"{name}.log"
tail = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else []
(Path(d) / f"step-{name}.json").write_text(json.dumps({
    "name": name, "status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else None,
    "seconds": float(secs or 0), "timeout_s": int(tmo or 0), "note": note, "log_tail": tail}, indent=2) + "\n")
EOF
}

step() {  # step NAME MAX_SECONDS CMD...   (never fails the script)
  local name=$1 max=$2; shift 2
  local left t rc t0 secs status
  left=$(remaining); t=$max
  (( left < t )) && t=$left
  if (( t < 15 )); then
    echo "== $name: skipped (${left}s left of the ${BUDGET_S}s budget)"
    record "$name" skipped "" 0 "$t" "no time left in the ${BUDGET_S}s budget"
    return 0
  fi
  echo "== $name (timeout ${t}s): $*"
  t0=$(date +%s.%N)
  timeout -k 5 "$t" "$@" >"$RESULTS/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  record "$name" "$status" "$rc" "$secs" "$t" ""
  tail -n 4 "$RESULTS/$name.log" | sed 's/^/   /'
  echo "   -> $status (rc $rc, ${secs}s)"
  return 0
}

status_of() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('status'))" "$RESULTS/step-$1.json" 2>/dev/null; }

# ---------------------------------------------------------------- probe and best-effort install
step probe_before 60 "$PY" $H probe "$RESULTS/probe_before.json"

install_missing() {  # decisions from probe_before.json; every pip call is best effort
  local plan
  plan=$("$PY" - "$RESULTS/probe_before.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
ok = lambda m: p["modules"].get(m, {}).get("ok")
core = all(ok(m) for m in ("torch", "diffusers", "accelerate", "datasets"))
print("core" if not core else "")
print(" ".join(m for m in ("pytest", "onnx", "onnxscript") if not ok(m)))
provs = p.get("onnxruntime_providers") or []
if "CUDAExecutionProvider" in provs:
    print("ort-ok")
elif p["dists"].get("onnxruntime"):
    print("ort-target")      # the CPU onnxruntime is installed: shadow it, do not replace it
else:
    print("ort-install")
print("" if ok("tensorrt") else "tensorrt")
print(str(p.get("torch_cuda", {}).get("cuda") or "").split(".")[0])
EOF
) || { echo "probe unreadable"; return 1; }
  local core pkgs ort trt cuda
  { read -r core; read -r pkgs; read -r ort; read -r trt; read -r cuda; } <<<"$plan"
  echo "plan: core=[$core] packages=[$pkgs] onnxruntime=[$ort] tensorrt=[$trt] torch CUDA major=[$cuda]"
  if [ -n "$core" ]; then "${PIP[@]}" -e ".[gpu-test]" || echo "pip install -e .[gpu-test] failed"; return 0; fi
  if [ -n "$pkgs" ]; then "${PIP[@]}" $pkgs || echo "pip install $pkgs failed"; fi
  case $ort in
    ort-install) "${PIP[@]}" "onnxruntime-gpu>=1.18" || echo "pip install onnxruntime-gpu failed" ;;
    ort-target) "${PIP[@]}" --no-deps --target "$WORK/ort-gpu" "onnxruntime-gpu>=1.18" \
                  || echo "pip install --target onnxruntime-gpu failed" ;;
  esac
  # TensorRT 10 for onnxruntime-gpu's CUDA 12 build (the PyPI default); the meta package as a second try
  if [ -n "$trt" ]; then
    "${PIP[@]}" "tensorrt-cu12>=10" || "${PIP[@]}" "tensorrt>=10" || echo "pip install tensorrt failed"
  fi
  # onnxruntime-gpu (CUDA 12) next to a torch built for another CUDA: its CUDA 12 libraries, on the loader
  # path only (LD_LIBRARY_PATH below), never on the Python path
  if [ "$ort" != ort-ok ] && [ -n "$cuda" ] && [ "$cuda" != 12 ]; then
    "${PIP[@]}" --no-deps --target "$WORK/cu12-libs" nvidia-cuda-runtime-cu12 nvidia-cublas-cu12 \
      nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-curand-cu12 nvidia-cuda-nvrtc-cu12 \
      || echo "pip install of the CUDA 12 libraries failed"
  fi
  return 0
}
if [ "${GPU_CHECK_NO_INSTALL:-0}" = 1 ]; then
  record install skipped "" 0 0 "GPU_CHECK_NO_INSTALL=1"
else
  export PY WORK RESULTS
  step install 150 bash -c "$(declare -p PIP); $(declare -f install_missing); install_missing"
fi
# onnxruntime-gpu installed beside a CPU onnxruntime lives in its own folder, ahead on the path
if [ -d "$WORK/ort-gpu/onnxruntime" ]; then export PYTHONPATH=$WORK/ort-gpu:$PYTHONPATH; fi
# CUDA / cuDNN / TensorRT libraries from pip wheels, where ONNX Runtime's dlopen finds them
LIBS=$("$PY" - "$WORK/ort-gpu" "$WORK/cu12-libs" <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.argv[1:]]
dirs = [d for r in roots for pat in ("nvidia/*/lib", "tensorrt_libs", "tensorrt_cu*_libs") for d in glob.glob(os.path.join(r, pat))]
print(":".join(dict.fromkeys(d for d in dirs if os.path.isdir(d))))
EOF
)
if [ -n "$LIBS" ]; then export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; fi
step probe_after 60 "$PY" $H probe "$RESULTS/probe_after.json"

# ---------------------------------------------------------------- the GPU tests
step pytest_gpu 100 "$PY" $H pytest "$RESULTS/pytest_gpu.json" -- -m gpu -k "not compile" -q -p no:cacheprovider tests

# ---------------------------------------------------------------- parity of every backend x precision
# (torch.compile's max-autotune takes minutes: it runs last, as parity_compile, with the time left)
step parity 100 "$PY" benchmarks/gpu_parity.py --device cuda --backends eager,onnx,tensorrt \
  --precisions fp32,bf16,fp16 --batch-size 8 --out "$RESULTS/parity.json"

# ---------------------------------------------------------------- throughput, bundled model at 64x64
B=256   # one engine for bench and generate: same batch size and precision (auto: TensorRT fp16)
step bench_64 75 "$PY" -m fastsynth bench --device cuda --backends eager,onnx,tensorrt --batch-sizes $B \
  --precision auto --repeats 5 --json "$RESULTS/bench_64.json"

# ---------------------------------------------------------------- 10,000 pairs, then 2 processes
G=(--batch-size $B --precision auto --device cuda --no-progress)
step generate_10k 60 "$PY" $H generate "$RESULTS/generate_10k.json" -- --n 10000 --out "$WORK/gen10k" \
  --backend tensorrt "${G[@]}"
GB=tensorrt
if [ "$(status_of generate_10k)" != ok ]; then
  GB=eager
  step generate_10k_eager 60 "$PY" $H generate "$RESULTS/generate_10k.json" -- --n 10000 \
    --out "$WORK/gen10k-eager" --backend eager "${G[@]}"
fi
REF=$WORK/gen10k; [ $GB = eager ] && REF=$WORK/gen10k-eager
step generate_2proc 50 bash -c "
  RANK=0 WORLD_SIZE=2 '$PY' $H generate '$RESULTS/generate_2proc_rank0.json' -- --n 2000 --out '$WORK/gen2p' \
    --backend $GB ${G[*]} & a=\$!
  RANK=1 WORLD_SIZE=2 '$PY' $H generate '$RESULTS/generate_2proc_rank1.json' -- --n 2000 --out '$WORK/gen2p' \
    --backend $GB ${G[*]} & b=\$!
  wait \$a; ra=\$?; wait \$b; rb=\$?; echo \"rank exit codes: \$ra \$rb\"; [ \$ra = 0 ] && [ \$rb = 0 ]"
step generate_2proc_compare 30 "$PY" $H compare "$RESULTS/generate_2proc_compare.json" "$REF" "$WORK/gen2p"

# ---------------------------------------------------------------- the paper-sized network at 256x256
step bench_256_eager 45 "$PY" -m fastsynth bench --device cuda --preset paper --resolution 256 --backends eager \
  --batch-sizes 32 --precision bf16 --repeats 3 --json "$RESULTS/bench_256_eager.json"
step bench_256_tensorrt 90 "$PY" -m fastsynth bench --device cuda --preset paper --resolution 256 \
  --backends tensorrt --batch-sizes 32 --precision fp16 --repeats 3 --no-baselines \
  --json "$RESULTS/bench_256_tensorrt.json"

# ---------------------------------------------------------------- the latent path at 256x256 (issue 21)
# a random-weight latent model (preset latent, the bundled TAEF2 decoder): denoiser and decoder timed apart, then
# 10,000 pairs at 256^2 (goal on one H100: <= 30 s); random weights measure speed only
LAT=$("$PY" -c "from fastsynth.bench import random_model_dir; print(random_model_dir('latent', 256))")
step bench_256_latent 90 "$PY" -m fastsynth bench --device cuda --model "$LAT" --backends eager,tensorrt \
  --batch-sizes 128 --precision auto --repeats 3 --no-baselines --json "$RESULTS/bench_256_latent.json"
step generate_10k_latent 90 "$PY" $H generate "$RESULTS/generate_10k_latent.json" -- --n 10000 --model "$LAT" \
  --out "$WORK/gen10k-latent" --backend tensorrt --batch-size 128 --precision auto --device cuda --no-progress
# the shipped 256^2 model with its defaults: each pair kept only where its mask agrees with the shipped real-data
# segmenter (about two candidates per kept pair), the segmenter on the same backend
step generate_10k_bundled256 150 "$PY" $H generate "$RESULTS/generate_10k_bundled256.json" -- --n 10000 \
  --model bundled-256 --out "$WORK/gen10k-b256" --backend tensorrt --batch-size 128 --precision auto --device cuda \
  --no-progress

step parity_compile 150 "$PY" benchmarks/gpu_parity.py --device cuda --backends compile \
  --precisions fp32,bf16,fp16 --batch-size 8 --out "$RESULTS/parity_compile.json"

"$PY" $H summary "$RESULTS" >/dev/null 2>&1 || echo "summary failed"
echo "gpu_check: done in $(( $(date +%s) - START ))s; results in $RESULTS (summary.json)"
