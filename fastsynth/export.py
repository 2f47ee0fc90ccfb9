"""Export + parity report: the artifact, its shapes/precision/versions, and its error against eager.

Works for both kinds of model fastsynth saves: the denoiser (x_t, t, cond -> model_output) and segmenters
trained by the downstream benchmark (image -> logits); the kind is read from the folder's fastsynth.json.
"""

from __future__ import annotations

import copy
import json
import os
import platform
from pathlib import Path

import torch

from . import __version__
from .errors import FastsynthError
from .runtime.export import denoiser_inputs, image_inputs, parity, parity_tolerance


def model_kind(model: str | os.PathLike | None) -> str:
    """'segmenter' for a folder saved by the downstream benchmark, else 'denoiser'."""
    from .models.denoiser import BUNDLED_MODELS

    if model is None or str(model) in BUNDLED_MODELS:
        return "denoiser"
    meta = Path(model) / "fastsynth.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("kind") == "segmenter":
                return "segmenter"
        except json.JSONDecodeError as exc:
            raise FastsynthError(f"{meta}: invalid JSON ({exc})") from None
    return "denoiser"


def export_artifact(model: str | None, fmt: str, out: str | os.PathLike, device: str = "auto",
                    precision: str = "fp32", batch_size: int = 8) -> dict:
    """``onnx``: ``out/denoiser.onnx`` (or ``segmenter.onnx``) + parity vs eager. ``tensorrt``: builds the engine
    in the cache that ``generate --backend tensorrt --precision P --batch-size B`` reads (through the same
    ``make_model_fn`` path: same ONNX file, engine folder and provider options), copies the ONNX file to ``out``
    and writes the parity of that engine."""
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    from .runtime.eager import eager_model_fn
    from .runtime.onnx import export_onnx, export_segmenter_onnx, onnx_model_fn
    from .utils import file_sha256, resolve_device

    dev = resolve_device(device)
    if fmt == "tensorrt" and dev.type != "cuda":
        raise FastsynthError("--format tensorrt needs a CUDA GPU (--device cuda); ONNX export works anywhere")
    out = Path(out)
    kind = model_kind(model)
    if kind == "segmenter":
        from .metrics.downstream import WEIGHTS_NAME, load_segmenter

        mdir = Path(model)
        net, seg_cfg, _ = load_segmenter(mdir)
        res = seg_cfg.resolution
        out.mkdir(parents=True, exist_ok=True)
        ref_fn = eager_model_fn(copy.deepcopy(net), dev, torch.float32)
        onnx_name = "segmenter.onnx"
        make_inputs = image_inputs(res)
        inputs = {"image": ["batch", 3, res, res]}
        outputs = {"logits": ["batch", 1, res, res]}
    else:
        from .models import load_model, resolve_model_dir
        from .models.denoiser import WEIGHTS_NAME

        mdir = resolve_model_dir(model)
        net, _ = load_model(mdir)
        res = net.config.resolution
        out.mkdir(parents=True, exist_ok=True)
        ref_fn = eager_model_fn(copy.deepcopy(net), dev, torch.float32)
        onnx_name = "denoiser.onnx"
        dc = net.config.data_channels  # image channels + label channels (4: RGB + a binary mask)
        make_inputs = denoiser_inputs(res, dc)
        inputs = {"x_t": ["batch", dc, res, res], "t": ["batch"], "cond": ["batch", 2 * dc, res, res]}
        outputs = {"model_output": ["batch", dc, res, res]}
    sha = file_sha256(mdir / WEIGHTS_NAME)
    trt_cache = None
    if fmt == "onnx":
        onnx_path = (export_segmenter_onnx(net, out / onnx_name, res) if kind == "segmenter"
                     else export_onnx(net, out / onnx_name))
        test_fn = onnx_model_fn(onnx_path, dev, "fp32")
        tol = parity_tolerance("fp32")
    else:  # exactly what generate / filter build (same cached ONNX file, engine folder, provider options)
        from .runtime import make_model_fn, make_segmenter_fn

        if kind == "segmenter":
            test_fn = make_segmenter_fn(copy.deepcopy(net), res, "tensorrt", dev, precision, batch_size=batch_size,
                                        model_sha=sha)
        else:
            from .config import GenerateConfig, network_batch_size

            # the engine generate builds for --batch-size B with its default guidance (a doubled batch)
            test_fn = make_model_fn(copy.deepcopy(net), "tensorrt", dev, precision,
                                    batch_size=network_batch_size(GenerateConfig(batch_size=batch_size)),
                                    model_sha=sha)
        trt_cache = test_fn.trt_cache
        onnx_path = out / onnx_name
        shutil.copyfile(test_fn.onnx_path, onnx_path)
        tol = parity_tolerance(precision)
    rep = parity(ref_fn, test_fn, res, batch_size=batch_size, tol=tol, make_inputs=make_inputs)

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    report = {
        "kind": kind, "format": fmt, "artifact": str(onnx_path if fmt == "onnx" else trt_cache),
        "onnx": str(onnx_path), "model": str(mdir), "model_sha256": sha,
        "batch_size": batch_size, "providers": getattr(test_fn, "providers", None),
        "inputs": inputs, "outputs": outputs,
        "precision": precision if fmt == "tensorrt" else "fp32", "device": str(dev),
        "versions": {"fastsynth": __version__, "torch": torch.__version__, "onnx": v("onnx"),
                     "onnxruntime": v("onnxruntime") or v("onnxruntime-gpu"), "tensorrt": v("tensorrt"),
                     "python": platform.python_version()},
        "parity": rep,
    }
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
