"""ONNX export of the denoiser (dynamic batch) and an ONNX Runtime runner.

Providers: CPU here; CUDA (with IO binding) and TensorRT with ``onnxruntime-gpu`` (the ``gpu`` extra) on a GPU.
Exported files are cached under ``$FASTSYNTH_CACHE`` (default ~/.cache/fastsynth), keyed by the weights'
hash, the resolution, the opset and the torch version, so the export is paid once per model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import FastsynthError, require
from ..utils import cache_dir

OPSET = 18
GRAPH_FORMAT = 2  # bump when the exported graph's inputs/outputs change (part of the cache key)


def export_onnx(model, path: str | os.PathLike, batch_size: int = 2) -> Path:
    """Export ``model`` (a Denoiser, float32) to ONNX with a dynamic batch dimension. Atomic."""
    require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    res = model.config.resolution
    net = model.float().cpu().eval()
    x = torch.randn(batch_size, model.config.data_channels, res, res)
    t = torch.full((batch_size,), 500, dtype=torch.long)
    c = torch.randn(batch_size, 2 * model.config.data_channels, res, res)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")  # concurrent exporters never share one
    with torch.no_grad():
        torch.onnx.export(net, (x, t, c), str(tmp), input_names=["x_t", "t", "cond"], output_names=["model_output"],
                          dynamic_shapes={"x_t": {0: batch}, "t": {0: batch}, "cond": {0: batch}},
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    os.replace(tmp, path)
    return path


def cached_onnx(model, model_sha: str) -> Path:
    key = f"{model_sha[:16]}-r{model.config.resolution}-g{GRAPH_FORMAT}-opset{OPSET}-torch{torch.__version__.split('+')[0]}"
    p = cache_dir() / "onnx" / f"{key}.onnx"
    if p.exists():
        try:
            import onnx

            onnx.checker.check_model(str(p))
            return p
        except Exception:  # a broken cache entry: export again
            p.unlink(missing_ok=True)
    export_onnx(model, p)
    return p


def _providers(device: torch.device, tensorrt: bool, precision: str, trt_cache: Path | None):
    ort = require("onnxruntime", "onnx", "The onnx backend")
    avail = ort.get_available_providers()
    if device.type == "cuda":
        if tensorrt:
            if "TensorrtExecutionProvider" not in avail:
                raise FastsynthError("the tensorrt backend needs onnxruntime-gpu built with TensorRT and the "
                                     "tensorrt package: pip install 'fastsynth[gpu]'")
            opts = {"device_id": device.index or 0, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(trt_cache), "trt_fp16_enable": precision in ("fp16", "auto"),
                    "trt_bf16_enable": precision == "bf16"}
            return [("TensorrtExecutionProvider", opts), ("CUDAExecutionProvider", {"device_id": device.index or 0})]
        if "CUDAExecutionProvider" not in avail:
            raise FastsynthError("ONNX Runtime here has no CUDA provider; install onnxruntime-gpu "
                                 "(pip install 'fastsynth[gpu]', in an environment without onnxruntime)")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    if tensorrt:
        raise FastsynthError("the tensorrt backend needs a CUDA GPU (--device cuda)")
    return ["CPUExecutionProvider"]


def onnx_model_fn(onnx_path: Path, device: torch.device, precision: str = "fp32", tensorrt: bool = False,
                trt_cache: Path | None = None):
    ort = require("onnxruntime", "onnx", "The onnx backend")
    if precision not in ("fp32", "auto") and not tensorrt:
        raise FastsynthError(f"--precision {precision} with the onnx backend: the exported graph is fp32; "
                             "use --backend tensorrt for reduced precision, or eager")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = torch.get_num_threads()
    so.log_severity_level = 3
    if trt_cache is not None:
        trt_cache.mkdir(parents=True, exist_ok=True)
    sess = ort.InferenceSession(str(onnx_path), so, providers=_providers(device, tensorrt, precision, trt_cache))

    if device.type == "cuda":
        def model_fn(x_t, t, cond):
            x_t, cond = x_t.float().contiguous(), cond.float().contiguous()
            t = t.to(device=device, dtype=torch.long).contiguous()
            out = torch.empty_like(x_t)
            io = sess.io_binding()
            for name, v in (("x_t", x_t), ("t", t), ("cond", cond)):
                io.bind_input(name, "cuda", device.index or 0, {torch.float32: np.float32, torch.long: np.int64}[v.dtype],
                              tuple(v.shape), v.data_ptr())
            io.bind_output("model_output", "cuda", device.index or 0, np.float32, tuple(out.shape), out.data_ptr())
            torch.cuda.current_stream(device).synchronize()  # ORT runs on its own stream: inputs must be ready
            io.synchronize_inputs()
            sess.run_with_iobinding(io)
            io.synchronize_outputs()
            return out
    else:
        def model_fn(x_t, t, cond):
            feed = {"x_t": x_t.float().contiguous().numpy(), "t": t.to(torch.long).contiguous().numpy(),
                    "cond": cond.float().contiguous().numpy()}
            return torch.from_numpy(sess.run(["model_output"], feed)[0])
    model_fn.session = sess
    return model_fn
