"""The OpenVINO backend (CPU): the cached ONNX file (fp32, or the gated int8 QDQ file) compiled by OpenVINO with
static shapes and its throughput hint.

- static shapes: the graph is compiled for one chunk size at the first call (ceil(rows / requests)); every call
  is split into such chunks, the last padded with copies of its last row (outputs dropped);
- throughput hint: OpenVINO runs the chunks on parallel streams, each with a share of the threads; with one thread
  this is the latency mode (one stream);
- ``INFERENCE_PRECISION_HINT f32``: OpenVINO would otherwise run bf16 on CPUs with AVX512_BF16 / AMX.

Measured against ONNX Runtime side by side in ``benchmarks/results/bench_int8_cpu.json`` (README "int8 on CPU").
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import FastsynthError, require
from ..utils import cpu_has_bf16

INPUTS = ("x_t", "t", "cond")


def openvino_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "none"


def openvino_model_fn(onnx_path: Path, device: torch.device, threads: int | None = None,
                      hint: str = "THROUGHPUT", precision: str = "fp32"):
    """``out = f(x_t, t, cond)`` with OpenVINO on the CPU, float32 in and out. ``precision`` "bf16": OpenVINO's
    bf16 inference precision (needs AVX512_BF16 or AMX; refused elsewhere, where OpenVINO would emulate it)."""
    if device.type != "cpu":
        raise FastsynthError("the openvino backend runs on the CPU here (--device cpu)")
    if precision == "bf16" and not cpu_has_bf16():
        raise FastsynthError("--precision bf16 on the CPU needs AVX512_BF16 or AMX, which this CPU lacks; use fp32")
    ov = require("openvino", "openvino", "The openvino backend")
    threads = threads or torch.get_num_threads()
    core = ov.Core()
    model = core.read_model(str(onnx_path))
    config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads,
              "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads == 1 or hint == "LATENCY":
        n_requests = 1
    else:  # how many parallel requests the hint wants for this thread count: ask a compiled (dynamic) model
        n_requests = int(core.compile_model(model, "CPU", config).get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    state: dict = {}

    def compiled(n: int):
        if "queue" not in state:
            chunk = max(1, math.ceil(n / n_requests))
            shapes = {}
            for inp in model.inputs:
                dims = list(inp.get_partial_shape())
                shapes[inp.get_any_name()] = [chunk] + [d.get_length() for d in dims[1:]]
            model.reshape(shapes)
            cm = core.compile_model(model, "CPU", {**config, "NUM_STREAMS": n_requests} if n_requests > 1 else config)
            queue = ov.AsyncInferQueue(cm, n_requests)
            queue.set_callback(lambda request, slot: state["out"].__setitem__(
                slot, request.get_output_tensor(0).data.copy()))
            state.update(chunk=chunk, queue=queue, compiled=cm)
        return state["chunk"], state["queue"]

    names = [inp.get_any_name() for inp in model.inputs]  # (x_t, t, cond) of the denoiser; (z,) of a decoder

    def model_fn(*args: torch.Tensor) -> torch.Tensor:
        arrays = tuple((a.detach().cpu().float().contiguous() if a.is_floating_point() else a.detach().cpu().long())
                       .numpy() for a in args)
        n = arrays[0].shape[0]
        chunk, queue = compiled(n)
        starts = list(range(0, n, chunk))
        state["out"] = [None] * len(starts)
        for k, i in enumerate(starts):
            part = [a[i:i + chunk] for a in arrays]
            if part[0].shape[0] < chunk:
                pad = chunk - part[0].shape[0]
                part = [np.concatenate([p, np.repeat(p[-1:], pad, axis=0)]) for p in part]
            queue.start_async(dict(zip(names, part)), k)
        queue.wait_all()
        return torch.from_numpy(np.concatenate(state["out"])[:n])

    model_fn.providers = [f"OpenVINO {openvino_version()} CPU ({precision}, {hint.lower()}, {n_requests} stream(s), "
                          f"{threads} thread(s))"]
    model_fn.session = None
    return model_fn
