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
from typing import Callable

import torch

from .. import __version__
from ..errors import FastsynthError


def denoiser_inputs(resolution: int, channels: int = 4) -> Callable:
    """Random denoiser inputs over all timestep ranges, with a random known-value indicator."""
    def make(g: torch.Generator, b: int):
        x = torch.randn(b, channels, resolution, resolution, generator=g)
        c = torch.cat([torch.randn(b, channels, resolution, resolution, generator=g),
                       (torch.rand(b, channels, resolution, resolution, generator=g) > 0.5).float()], 1)
        return x, torch.randint(0, 1000, (b,), generator=g), c
    return make


def image_inputs(resolution: int) -> Callable:
    """Random ImageNet-normalised images, the segmenter's input."""
    return lambda g, b: (torch.randn(b, 3, resolution, resolution, generator=g),)


def parity(ref_fn, test_fn, resolution: int, channels: int = 4, batch_size: int = 4, n_inputs: int = 3,
           seed: int = 0, tol: float = 1e-3, make_inputs: Callable | None = None) -> dict:
    """Max abs / relative error of ``test_fn`` vs ``ref_fn`` on fresh random inputs."""
    make_inputs = make_inputs or denoiser_inputs(resolution, channels)
    g = torch.Generator().manual_seed(seed)
    max_abs, max_rel = 0.0, 0.0
    for _ in range(n_inputs):
        args = make_inputs(g, batch_size)
        a, b = ref_fn(*args).float().cpu(), test_fn(*args).float().cpu()
        err = (a - b).abs()
        max_abs = max(max_abs, err.max().item())
        max_rel = max(max_rel, (err.max() / a.abs().max().clamp_min(1e-12)).item())
    return {"max_abs": max_abs, "max_rel": max_rel, "n_inputs": n_inputs, "batch_size": batch_size,
            "tolerance_rel": tol, "ok": max_rel <= tol}


def model_kind(model: str | os.PathLike | None) -> str:
    """'segmenter' for a folder saved by the downstream benchmark, else 'denoiser'."""
    from ..models.denoiser import BUNDLED_MODELS

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
    from importlib.metadata import PackageNotFoundError, version

    from ..pipeline import resolve_device
    from ..utils import file_sha256
    from .eager import eager_model_fn
    from .onnx import export_onnx, export_segmenter_onnx, onnx_model_fn

    dev = resolve_device(device)
    if fmt == "tensorrt" and dev.type != "cuda":
        raise FastsynthError("--format tensorrt needs a CUDA GPU (--device cuda); ONNX export works anywhere")
    out = Path(out)
    kind = model_kind(model)
    if kind == "segmenter":
        from ..metrics.downstream import WEIGHTS_NAME, load_segmenter

        mdir = Path(model)
        net, seg_cfg, _ = load_segmenter(mdir)
        res = seg_cfg.resolution
        out.mkdir(parents=True, exist_ok=True)
        ref_fn = eager_model_fn(copy.deepcopy(net), dev, torch.float32)
        onnx_path = export_segmenter_onnx(net, out / "segmenter.onnx", res)
        make_inputs = image_inputs(res)
        inputs = {"image": ["batch", 3, res, res]}
        outputs = {"logits": ["batch", 1, res, res]}
    else:
        from ..models import load_model, resolve_model_dir
        from ..models.denoiser import WEIGHTS_NAME

        mdir = resolve_model_dir(model)
        net, _ = load_model(mdir)
        res = net.config.resolution
        out.mkdir(parents=True, exist_ok=True)
        ref_fn = eager_model_fn(copy.deepcopy(net), dev, torch.float32)
        onnx_path = export_onnx(net, out / "denoiser.onnx")
        dc = net.config.data_channels  # image channels + label channels (4: RGB + a binary mask)
        make_inputs = denoiser_inputs(res, dc)
        inputs = {"x_t": ["batch", dc, res, res], "t": ["batch"], "cond": ["batch", 2 * dc, res, res]}
        outputs = {"model_output": ["batch", dc, res, res]}
    sha = file_sha256(mdir / WEIGHTS_NAME)
    if fmt == "onnx":
        test_fn = onnx_model_fn(onnx_path, dev, "fp32")
        tol = 1e-3
    else:
        test_fn = onnx_model_fn(onnx_path, dev, precision, tensorrt=True, trt_cache=out / "engines")
        tol = 1e-3 if precision == "fp32" else 3e-2
    rep = parity(ref_fn, test_fn, res, batch_size=batch_size, tol=tol, make_inputs=make_inputs)

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    report = {
        "kind": kind, "format": fmt, "artifact": str(onnx_path if fmt == "onnx" else out / "engines"),
        "onnx": str(onnx_path), "model": str(mdir), "model_sha256": sha,
        "inputs": inputs, "outputs": outputs,
        "precision": precision if fmt == "tensorrt" else "fp32", "device": str(dev),
        "versions": {"fastsynth": __version__, "torch": torch.__version__, "onnx": v("onnx"),
                     "onnxruntime": v("onnxruntime") or v("onnxruntime-gpu"), "tensorrt": v("tensorrt"),
                     "python": platform.python_version()},
        "parity": rep,
    }
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
