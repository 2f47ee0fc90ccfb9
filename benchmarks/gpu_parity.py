"""Parity of every backend x precision against eager fp32 on the CPU (the unambiguous reference: no TF32),
written as JSON after every row so a run cut short by a timeout keeps what it measured.

    python benchmarks/gpu_parity.py --device cuda --out results/parity.json                 # on a GPU
    python benchmarks/gpu_parity.py --device cpu --backends eager,onnx --precisions fp32,bf16 --out /tmp/p.json

Each row: backend, precision, ok / max_abs / max_rel against the tolerance of that precision
(fastsynth.runtime.export.parity_tolerance), the providers an ONNX Runtime session really got, build seconds
(export / engine build / compile on the first call) and the median seconds per call. A combination fastsynth
refuses (e.g. the fp32-only onnx backend at fp16) is recorded with ``status: "refused"`` and its message.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from fastsynth.bench import environment  # noqa: E402
from fastsynth.errors import FastsynthError  # noqa: E402
from fastsynth.models import load_model, resolve_model_dir  # noqa: E402
from fastsynth.models.denoiser import WEIGHTS_NAME  # noqa: E402
from fastsynth.pipeline import resolve_device  # noqa: E402
from fastsynth.runtime import make_model_fn  # noqa: E402
from fastsynth.runtime.export import denoiser_inputs, parity, parity_tolerance  # noqa: E402
from fastsynth.utils import file_sha256  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the bundled model)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backends", default="eager,onnx,tensorrt,compile", help="in this order (compile is slowest)")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-inputs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per row (median reported)")
    ap.add_argument("--out", required=True, help="JSON file (rewritten after every row)")
    a = ap.parse_args(argv)

    dev = resolve_device(a.device)
    mdir = resolve_model_dir(a.model)
    sha = file_sha256(mdir / WEIGHTS_NAME)
    net, _ = load_model(mdir)
    res = net.config.resolution
    ref = make_model_fn(load_model(mdir)[0], "eager", "cpu", "fp32")
    result = {"environment": environment(dev), "model": str(mdir), "model_sha256": sha, "resolution": res,
              "reference": "eager fp32 on the CPU", "batch_size": a.batch_size, "rows": []}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, out)

    save()
    failures = 0
    for backend in [b.strip() for b in a.backends.split(",") if b.strip()]:
        for precision in [p.strip() for p in a.precisions.split(",") if p.strip()]:
            row = {"backend": backend, "precision": precision, "device": str(dev)}
            t0 = time.perf_counter()
            try:
                fn = make_model_fn(load_model(mdir)[0], backend, dev, precision, batch_size=a.batch_size,
                                   model_sha=sha)
                x, t, c = denoiser_inputs(res)(torch.Generator().manual_seed(123), a.batch_size)
                x, t, c = x.to(dev), t.to(dev), c.to(dev)
                fn(x, t, c)  # the first call builds (TensorRT engine, compiled graph)
                _sync(dev)
                row["build_s"] = round(time.perf_counter() - t0, 2)
                row["providers"] = getattr(fn, "providers", None)
                row.update(parity(ref, fn, res, batch_size=a.batch_size, n_inputs=a.n_inputs,
                                  tol=parity_tolerance(precision)))
                times = []
                for _ in range(a.repeats):
                    t1 = time.perf_counter()
                    fn(x, t, c)
                    _sync(dev)
                    times.append(time.perf_counter() - t1)
                row["seconds_per_call"] = statistics.median(times)
                row["status"] = "ok" if row["ok"] else "parity_failed"
            except FastsynthError as exc:  # a combination fastsynth refuses, or a provider that did not start
                row.update(status="refused", error=str(exc), seconds=round(time.perf_counter() - t0, 2))
            except Exception as exc:  # noqa: BLE001 - record and go on to the next combination
                row.update(status="error", error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(limit=8), seconds=round(time.perf_counter() - t0, 2))
            failures += row["status"] in ("parity_failed", "error")
            result["rows"].append(row)
            save()
            print(json.dumps({k: row.get(k) for k in ("backend", "precision", "status", "max_rel", "tolerance_rel",
                                                      "build_s", "seconds_per_call", "error")}), flush=True)
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
