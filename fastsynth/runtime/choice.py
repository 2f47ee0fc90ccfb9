"""The per-machine backend choice of ``auto`` on CPU: which backend measured fastest here, per precision.

Written by ``fastsynth bench --choose`` (side-by-side timings), read by ``auto``. Keyed by what decides the
ranking: the CPU model and its instruction sets (AVX2 / AVX-512 / AVX512_BF16 / VNNI / AMX), the thread count and
the runtimes' versions. Without a choice file ``auto`` keeps its measured default (ONNX Runtime fp32 when installed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..utils import cache_dir, cpu_info

# a backend replaces the default one (ONNX Runtime) only when it is at least this much faster (median time per
# evaluation, measured side by side): a few per cent is within the noise of a shared machine
MARGIN = 0.95
DEFAULT = "onnx"
# without a choice file: OpenVINO bf16's time per evaluation relative to ONNX Runtime fp32 on a CPU with native bf16,
# as measured side by side on an AVX512_BF16 AMD EPYC (0.55, benchmarks/results/bench_bf16_cpu.json); used only
# where the CPU has native bf16 and the gate accepted bf16 for the model
BF16_PRIOR = 0.55


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def machine(threads: int | None = None) -> dict:
    cpu = cpu_info()
    return {"cpu": cpu, "threads": threads or torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime"), "openvino": _version("openvino")}


def choice_path(threads: int | None = None) -> Path:
    key = hashlib.sha256(json.dumps(machine(threads), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "auto" / f"cpu-{key}.json"


def read_choice(threads: int | None = None) -> dict | None:
    try:
        return json.loads(choice_path(threads).read_text())
    except (OSError, ValueError):
        return None


def write_choice(ms_per_eval: dict, batch_size: int, model_sha: str, threads: int | None = None) -> Path:
    """``ms_per_eval``: {(backend, precision): median ms per evaluation} measured side by side. Stores, per
    precision, the fastest backend (the default one unless another beats it by ``MARGIN``) and all the timings."""
    fastest: dict = {}
    for precision in sorted({p for _, p in ms_per_eval}):
        times = {b: ms for (b, p), ms in ms_per_eval.items() if p == precision}
        best = min(times, key=times.get)
        if DEFAULT in times and times[best] > MARGIN * times[DEFAULT]:
            best = DEFAULT
        fastest[precision] = {"backend": best, "ms_per_eval": times[best]}
    rec = {"machine": machine(threads), "margin": MARGIN, "batch_size": batch_size, "model_sha256": model_sha,
           "ms_per_eval": {f"{b}:{p}": ms for (b, p), ms in ms_per_eval.items()}, "fastest": fastest}
    p = choice_path(threads)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    os.replace(tmp, p)
    return p
