"""Images per autoencoder call on a CPU: time per image and resident memory of TAEF2's decoder (OpenVINO bf16 on its
cached ONNX graph, and eager fp32) and encoder (eager fp32) at 256², calls of 16 against calls of 2, alternated.

    OMP_NUM_THREADS=1 python benchmarks/ae_batch.py [--repeats 2]

The OpenVINO graph is the one generate exports (run a 256² generate with --backend openvino once first).
Prints one line per (part, backend, batch, repeat); memory is the process's peak, so run one batch size per process
for memory (--only 16 / --only 2).
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import torch


def rss_mb() -> int:
    with open("/proc/self/status") as fh:
        d = dict(line.split(":", 1) for line in fh)
    return int(d["VmHWM"].split()[0]) // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", type=int, default=None, help="one batch size (for its peak memory)")
    ap.add_argument("--n", type=int, default=32, help="images per timing")
    a = ap.parse_args()
    from fastsynth.models.autoencoder import load_autoencoder
    from fastsynth.runtime.openvino import openvino_model_fn
    from fastsynth.utils import cache_dir

    ae = load_autoencoder("taef2", None, channels=3)
    onnx = sorted(glob.glob(os.path.join(cache_dir(), "onnx", "decoder-*-c3-g32-*.onnx")))
    sizes = (a.only,) if a.only else (16, 2)
    # an OpenVINO function compiles for the batch of its first call (smaller calls are padded to it): one per size
    ov = {b: openvino_model_fn(onnx[0], torch.device("cpu"), precision="bf16") for b in sizes} if onnx else None
    z = torch.randn(a.n, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    x = torch.rand(a.n, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    parts = [("decoder", "eager fp32", lambda b: ae.decode(z, batch_size=b)),
             ("encoder", "eager fp32", lambda b: ae.encode(x, batch_size=b))]
    if ov is not None:
        parts.insert(0, ("decoder", "openvino bf16",
                         lambda b: torch.cat([ov[b](z[i:i + b]) for i in range(0, a.n, b)])))
    for part, backend, fn in parts:
        for b in sizes:
            fn(b)  # warm-up (and the OpenVINO compile of this size)
        for r in range(a.repeats):
            for b in sizes:
                t = time.perf_counter()
                fn(b)
                ms = (time.perf_counter() - t) / a.n * 1000
                print(f"{part:8s} {backend:14s} batch {b:2d} repeat {r}: {ms:7.1f} ms per image, peak RSS {rss_mb()} MB",
                      flush=True)


if __name__ == "__main__":
    main()
