"""Export + parity report: the artifact, its shapes/precision/versions, and its error against eager."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import torch

from .. import __version__
from ..errors import FastsynthError


def parity(ref_fn, test_fn, resolution: int, channels: int = 4, batch_size: int = 4, n_inputs: int = 3,
           seed: int = 0, tol: float = 1e-3) -> dict:
    """Max abs / relative error of ``test_fn`` vs ``ref_fn`` on fresh random inputs (all timestep ranges)."""
    g = torch.Generator().manual_seed(seed)
    max_abs, max_rel = 0.0, 0.0
    for _ in range(n_inputs):
        x = torch.randn(batch_size, channels, resolution, resolution, generator=g)
        c = torch.cat([torch.randn(batch_size, channels, resolution, resolution, generator=g),
                       (torch.rand(batch_size, channels, resolution, resolution, generator=g) > 0.5).float()], 1)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        a, b = ref_fn(x, t, c).float().cpu(), test_fn(x, t, c).float().cpu()
        err = (a - b).abs()
        max_abs = max(max_abs, err.max().item())
        max_rel = max(max_rel, (err.max() / a.abs().max().clamp_min(1e-12)).item())
    return {"max_abs": max_abs, "max_rel": max_rel, "n_inputs": n_inputs, "batch_size": batch_size,
            "tolerance_rel": tol, "ok": max_rel <= tol}


def export_artifact(model: str | None, fmt: str, out: str | os.PathLike, device: str = "auto",
                    precision: str = "fp32", batch_size: int = 8) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from ..models import load_model, resolve_model_dir
    from ..models.denoiser import WEIGHTS_NAME
    from ..pipeline import file_sha256, resolve_device
    from . import make_model_fn
    from .onnx import export_onnx

    dev = resolve_device(device)
    if fmt == "tensorrt" and dev.type != "cuda":
        raise FastsynthError("--format tensorrt needs a CUDA GPU (--device cuda); ONNX export works anywhere")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mdir = resolve_model_dir(model)
    sha = file_sha256(mdir / WEIGHTS_NAME)
    net, meta = load_model(mdir)
    onnx_path = export_onnx(net, out / "denoiser.onnx")
    ref_fn = make_model_fn(load_model(mdir)[0], "eager", dev, "fp32")
    if fmt == "onnx":
        from .onnx import onnx_model_fn

        test_fn = onnx_model_fn(onnx_path, dev, "fp32")
        tol = 1e-3
    else:
        from .onnx import onnx_model_fn

        test_fn = onnx_model_fn(onnx_path, dev, precision, tensorrt=True, trt_cache=out / "engines")
        tol = 1e-3 if precision == "fp32" else 3e-2
    rep = parity(ref_fn, test_fn, net.config.resolution, batch_size=batch_size, tol=tol)

    def v(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    report = {
        "format": fmt, "artifact": str(onnx_path if fmt == "onnx" else out / "engines"),
        "onnx": str(onnx_path), "model": str(mdir), "model_sha256": sha,
        "inputs": {"x_t": ["batch", 4, net.config.resolution, net.config.resolution], "t": ["batch"],
                   "cond": ["batch", 8, net.config.resolution, net.config.resolution]},
        "outputs": {"model_output": ["batch", 4, net.config.resolution, net.config.resolution]},
        "precision": precision if fmt == "tensorrt" else "fp32", "device": str(dev),
        "versions": {"fastsynth": __version__, "torch": torch.__version__, "onnx": v("onnx"),
                     "onnxruntime": v("onnxruntime") or v("onnxruntime-gpu"), "tensorrt": v("tensorrt"),
                     "python": platform.python_version()},
        "parity": rep,
    }
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
