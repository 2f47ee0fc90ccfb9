"""The autoencoder's decoder (and encoder) on generate's backends: ``image = f(z)`` (float32 in, float32 [-1, 1]
out), ``z = f(image)``.

A latent model's pairs end with one decoder call per image; it runs on the backend and precision the denoiser runs
on (eager, ONNX Runtime, OpenVINO fp32 / bf16, TensorRT on a GPU), exported once to ONNX per autoencoder, image
channels and latent grid (cached like the denoiser's graph, keyed by the autoencoder's weights hash). int8 is the
denoiser's alone: with an int8 denoiser the decoder runs fp32 on the same backend. The encoder runs the same way where
generation encodes images in every batch (the cascade's upsampled pairs).
"""

from __future__ import annotations

import torch

from ..errors import FastsynthError
from ..models.autoencoder import ae_batch_size

DECODER_GRAPH_FORMAT = 1


def cached_decoder_onnx(decoder, ae_sha: str, grid: int) -> "Path":  # noqa: F821
    return _cached_onnx(decoder, "decoder", ae_sha, (decoder.net[1].in_channels, grid, grid),
                        f"c{decoder.channels}-g{grid}")


def cached_encoder_onnx(encoder, ae_sha: str, channels: int, size: int) -> "Path":  # noqa: F821
    return _cached_onnx(encoder, "encoder", ae_sha, (channels, size, size), f"c{channels}-s{size}")


def _cached_onnx(module, part: str, ae_sha: str, in_shape: tuple, shape_tag: str) -> "Path":  # noqa: F821
    from pathlib import Path

    from ..utils import cache_dir
    from .onnx import OPSET, _export, cached_export

    key = (f"{part}-{ae_sha[:16]}-{shape_tag}-f{DECODER_GRAPH_FORMAT}-opset{OPSET}-"
           f"torch{torch.__version__.split('+')[0]}")
    x = torch.randn(2, *in_shape)
    names = ("z", "image") if part == "decoder" else ("image", "z")
    return cached_export(Path(cache_dir()) / "onnx" / f"{key}.onnx",
                         lambda p: _export(module.float().cpu().eval(), (x,), [names[0]], names[1], p),
                         f"autoencoder's {part}")


def make_decoder_fn(decoder, ae_sha: str, grid: int, backend: str = "eager", device="cpu", precision: str = "fp32",
                    batch_size: int | None = None):
    """``image = f(z)`` for the autoencoder's ``decoder`` with the named backend (not ``auto``: the caller passes
    what the denoiser resolved to). Carries ``backend`` and ``precision`` (what runs)."""
    return _make_fn(decoder, lambda: cached_decoder_onnx(decoder, ae_sha, grid), "decoder", ae_sha, backend, device,
                    precision, batch_size)


def make_encoder_fn(encoder, ae_sha: str, channels: int, size: int, backend: str = "eager", device="cpu",
                    precision: str = "fp32", batch_size: int | None = None):
    """``z = f(image)`` (images [N, channels, size, size] in [-1, 1]) for the autoencoder's ``encoder``, on the
    backends and precisions of :func:`make_decoder_fn`."""
    return _make_fn(encoder, lambda: cached_encoder_onnx(encoder, ae_sha, channels, size), "encoder", ae_sha,
                    backend, device, precision, batch_size)


def _make_fn(module, onnx_path, part: str, ae_sha: str, backend: str, device, precision: str, batch_size):
    device = torch.device(device)
    batch_size = ae_batch_size(device, batch_size)
    if precision == "int8":
        precision = "fp32"
    if precision == "auto":
        precision = "fp32"
    if backend == "compile":
        backend = "eager"
    if backend == "eager":
        if precision == "fp16" and device.type == "cpu":
            raise FastsynthError("--precision fp16 is not supported on CPU; use fp32 or bf16")
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        net = module.to(device).eval()

        @torch.inference_mode()
        def fn(z):
            out = []
            for i in range(0, len(z), batch_size):
                zi = z[i:i + batch_size].to(device)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    out.append(net(zi.float()).float())
            return torch.cat(out).cpu()
    elif backend == "openvino":
        from .openvino import openvino_model_fn

        if precision not in ("fp32", "bf16"):
            raise FastsynthError(f"--precision {precision} with the openvino backend: use fp32 or bf16")
        inner = openvino_model_fn(onnx_path(), device, precision=precision)

        def fn(z):
            return torch.cat([inner(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])
    elif backend in ("onnx", "tensorrt"):
        from .onnx import onnx_model_fn

        if backend == "tensorrt":
            if device.type != "cuda":
                raise FastsynthError("the tensorrt backend needs a CUDA GPU (--device cuda)")
            from .tensorrt import engine_cache_dir

            from .padding import fixed_batch

            inner = fixed_batch(onnx_model_fn(onnx_path(), device, precision, tensorrt=True,
                                              trt_cache=engine_cache_dir(ae_sha, batch_size, precision, part)),
                                batch_size)
        else:
            inner = onnx_model_fn(onnx_path(), device, "fp32")
            precision = "fp32"

        def fn(z):
            return torch.cat([inner(z[i:i + batch_size]).cpu() for i in range(0, len(z), batch_size)])
    else:
        raise FastsynthError(f"{part} backend {backend!r}: choose eager, onnx, openvino or tensorrt")
    fn.backend, fn.precision = backend, precision
    return fn
