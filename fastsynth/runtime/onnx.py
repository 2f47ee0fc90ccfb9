"""ONNX export of the denoiser and of segmenters (dynamic batch) and an ONNX Runtime runner.

Providers: CPU here; CUDA (with IO binding) and TensorRT with ``onnxruntime-gpu`` (the ``gpu`` extra) on a GPU;
the session must really get the provider asked for (see ``tensorrt.check_session_providers``).
Exported files are cached under ``$FASTSYNTH_CACHE`` (default ~/.cache/fastsynth), keyed by the weights'
hash, the resolution, the opset and the torch version, so the export is paid once per model.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import FastsynthError, require
from ..utils import cache_dir
from .tensorrt import check_session_providers, preload_tensorrt, providers_for

OPSET = 18
GRAPH_FORMAT = 2  # bump when the exported graph's inputs/outputs change (part of the cache key)


def _export(module, args: tuple, input_names: list[str], output_name: str, path: Path) -> Path:
    """torch.onnx (dynamo) export with a dynamic batch dimension on every input; written atomically."""
    require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    tmp = path.resolve().with_name(f"{path.stem}.{os.getpid()}.tmp.onnx")  # concurrent exporters never share one
    # the exporter and ONNX Runtime's shape inference write temporaries (e.g. sym_shape_infer_temp.onnx) into
    # the working directory: run them inside a private temporary folder, removed afterwards
    with tempfile.TemporaryDirectory(prefix="fastsynth-onnx-") as scratch, _cwd(scratch), torch.no_grad(), \
            warnings.catch_warnings(), _quiet_logger("torch.onnx"):
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")  # one shared batch dim
        torch.onnx.export(module, args, str(tmp), input_names=input_names, output_names=[output_name],
                          dynamic_shapes=tuple({0: batch} for _ in input_names),
                          opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def _quiet_logger(name: str):
    """The exporter's internal log lines (e.g. "torchvision is not installed. Skipping torchvision::roi_align")
    say nothing to a fastsynth user: only errors get through while exporting."""
    import logging

    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)


@contextlib.contextmanager
def _cwd(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def export_onnx(model, path: str | os.PathLike, batch_size: int = 2) -> Path:
    """Export a Denoiser (float32) to ONNX: inputs x_t, t, cond -> model_output, dynamic batch."""
    res = model.config.grid  # the latent grid of a latent model
    net = model.float().cpu().eval()
    x = torch.randn(batch_size, model.config.data_channels, res, res)
    t = torch.full((batch_size,), 500, dtype=torch.long)
    c = torch.randn(batch_size, 2 * model.config.data_channels, res, res)
    return _export(net, (x, t, c), ["x_t", "t", "cond"], "model_output", Path(path))


def export_segmenter_onnx(model, path: str | os.PathLike, resolution: int, batch_size: int = 2) -> Path:
    """Export a segmenter (smp model, float32) to ONNX: input image (ImageNet-normalised) -> logits."""
    net = model.float().cpu().eval()
    return _export(net, (torch.randn(batch_size, 3, resolution, resolution),), ["image"], "logits", Path(path))


def cached_onnx(model, model_sha: str, kind: str = "denoiser", resolution: int | None = None) -> Path:
    """The ONNX file of ``model`` from the cache, exported on first use (a broken entry is exported again)."""
    res = resolution or model.config.resolution
    prefix = "" if kind == "denoiser" else f"{kind}-"
    key = f"{prefix}{model_sha[:16]}-r{res}-g{GRAPH_FORMAT}-opset{OPSET}-torch{torch.__version__.split('+')[0]}"
    p = cache_dir() / "onnx" / f"{key}.onnx"
    if kind == "denoiser":
        return cached_export(p, lambda path: export_onnx(model, path), kind)
    return cached_export(p, lambda path: export_segmenter_onnx(model, path, res), kind)


def cached_export(p: Path, export, what: str) -> Path:
    """``p`` when it holds a valid ONNX file, else ``export(p)`` first (said once on stderr; a broken entry is
    exported again)."""
    if p.exists():
        try:
            import onnx

            onnx.checker.check_model(str(p))
            return p
        except Exception:  # a broken cache entry: export again
            p.unlink(missing_ok=True)
    import sys

    print(f"exporting the {what} to ONNX for the onnx backend (once per model, about half a minute; cached in "
          f"{p.parent})", file=sys.stderr, flush=True)
    export(p)
    return p


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
    providers = providers_for(device, tensorrt, precision, trt_cache, ort)
    if tensorrt:
        preload_tensorrt()
        trt_cache.mkdir(parents=True, exist_ok=True)
    sess = ort.InferenceSession(str(onnx_path), so, providers=providers)
    # ONNX Runtime falls back to the next provider (CUDA, CPU) when one cannot start: refuse, loudly
    got = check_session_providers(sess, providers)

    in_names = [i.name for i in sess.get_inputs()]
    out_meta = sess.get_outputs()[0]
    np_types = {torch.float32: np.float32, torch.long: np.int64}

    def prep(v: torch.Tensor) -> torch.Tensor:
        return (v.float() if v.is_floating_point() else v.to(torch.long)).contiguous()

    if device.type == "cuda":
        def model_fn(*args):
            args = [prep(a.to(device)) for a in args]
            n = args[0].shape[0]
            shape = tuple(d if isinstance(d, int) else n for d in out_meta.shape)
            out = torch.empty(shape, dtype=torch.float32, device=device)
            io = sess.io_binding()
            for name, v in zip(in_names, args):
                io.bind_input(name, "cuda", device.index or 0, np_types[v.dtype], tuple(v.shape), v.data_ptr())
            io.bind_output(out_meta.name, "cuda", device.index or 0, np.float32, shape, out.data_ptr())
            torch.cuda.current_stream(device).synchronize()  # ORT runs on its own stream: inputs must be ready
            io.synchronize_inputs()
            sess.run_with_iobinding(io)
            io.synchronize_outputs()
            return out
    else:
        def model_fn(*args):
            feed = {name: prep(v.cpu()).numpy() for name, v in zip(in_names, args)}
            return torch.from_numpy(sess.run([out_meta.name], feed)[0])
    model_fn.session = sess
    model_fn.providers = got
    return model_fn
