"""ONNX Runtime's OpenVINO execution provider against its CPU provider, side by side, on fastsynth's cached ONNX
files (the fp32 export and the gated int8 QDQ file).

``onnxruntime-openvino`` replaces the ``onnxruntime`` module, so this runs in its own environment with only numpy
and that package (no torch, no fastsynth import):

    python -m venv /tmp/ovep && /tmp/ovep/bin/pip install onnxruntime-openvino numpy
    OMP_NUM_THREADS=1 /tmp/ovep/bin/python benchmarks/ort_openvino_ep.py --threads 1 --repeats 9 \\
        --fp32 ~/.cache/fastsynth/onnx/<sha16>-r64-...onnx --int8 ~/.cache/fastsynth/int8/<key>/model.onnx \\
        --json benchmarks/results/ort_openvino_ep_cpu.json

Inputs: batch 64 of the bundled model's shapes (x_t, t = 500, cond), ORT_ENABLE_ALL. Per configuration the median
time per call over ``repeats`` rounds (one call of each configuration per round) and the median per-round ratio to
the first (ONNX Runtime CPU provider, fp32).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnxruntime as ort

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu() -> dict:
    model, flags = None, set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "model name" and model is None:
            model = v.strip()
        if k.strip() == "flags" and not flags:
            flags = set(v.split())
    return {"model": model, "flags": {f: f in flags for f in FLAGS}}


def session(path: str, provider: str, threads: int):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if provider == "cpu":
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    else:
        s = ort.InferenceSession(path, so, providers=[("OpenVINOExecutionProvider", {
            "device_type": "CPU", "num_of_threads": str(threads), "precision": "FP32"})])
    want = "CPUExecutionProvider" if provider == "cpu" else "OpenVINOExecutionProvider"
    if s.get_providers()[0] != want:
        sys.exit(f"{want} did not start (got {s.get_providers()})")
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--int8", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    g = np.random.default_rng(0)
    b = a.batch
    feed = {"x_t": g.standard_normal((b, 4, 64, 64)).astype(np.float32), "t": np.full((b,), 500, np.int64),
            "cond": np.zeros((b, 8, 64, 64), np.float32)}
    configs = [("cpu_ep", "fp32", a.fp32, "cpu"), ("openvino_ep", "fp32", a.fp32, "ov"),
               ("cpu_ep", "int8", a.int8, "cpu"), ("openvino_ep", "int8", a.int8, "ov")]
    sess = [session(p, prov, a.threads) for _, _, p, prov in configs]
    ref = sess[0].run(None, feed)[0]
    outs = []
    for s in sess:  # warm-up + the output's distance to the CPU provider's fp32
        y = s.run(None, feed)[0]
        outs.append(float(np.sqrt(((y - ref) ** 2).mean() / (ref ** 2).mean())))
    times = [[] for _ in sess]
    for _ in range(a.repeats):
        for k, s in enumerate(sess):
            t0 = time.perf_counter()
            s.run(None, feed)
            times[k].append(time.perf_counter() - t0)
    rows = []
    for (ep, prec, path, _), t, err in zip(configs, times, outs):
        rows.append({"provider": ep, "precision": prec, "file": Path(path).name,
                     "ms_per_eval": 1000 * statistics.median(t), "ratio_to_first": statistics.median(
                         x / y for x, y in zip(t, times[0])), "rel_rms_vs_cpu_fp32": err, "times_s": t})
        print(f"{ep:12s} {prec}: {rows[-1]['ms_per_eval']:.0f} ms per evaluation, ratio {rows[-1]['ratio_to_first']:.3f}"
              f" (relative RMS vs CPU fp32 {err:.2g})")
    res = {"command": " ".join(["python", *sys.argv]), "cpu": cpu(), "threads": a.threads, "batch": b,
           "repeats": a.repeats, "onnxruntime": ort.__version__, "package": f"onnxruntime-openvino "
           f"{version('onnxruntime-openvino')}", "python": platform.python_version(), "records": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
