"""The autoencoder's decoder on generate's backends: ``image = f(z)`` (float32 in, float32 [-1, 1] out).

A latent model's pairs end with one decoder call per image; it runs on the backend and precision the denoiser runs
on (eager, ONNX Runtime, OpenVINO fp32 / bf16, TensorRT on a GPU), exported once to ONNX per autoencoder, image
channels and latent grid (cached like the denoiser's graph, keyed by the autoencoder's weights hash). int8 is the
denoiser's alone: with an int8 denoiser the decoder runs fp32 on the same backend.
"""

from __future__ import annotations

import torch

from ..errors import FastsynthError

DECODER_GRAPH_FORMAT = 1


def cached_decoder_onnx(decoder, ae_sha: str, grid: int) -> "Path":  # noqa: F821
    from pathlib import Path

    from ..utils import cache_dir
    from .onnx import OPSET, _export, cached_export

    key = (f"decoder-{ae_sha[:16]}-c{decoder.channels}-g{grid}-f{DECODER_GRAPH_FORMAT}-opset{OPSET}-"
           f"torch{torch.__version__.split('+')[0]}")
    z = torch.randn(2, decoder.net[1].in_channels, grid, grid)
    return cached_export(Path(cache_dir()) / "onnx" / f"{key}.onnx",
                         lambda p: _export(decoder.float().cpu().eval(), (z,), ["z"], "image", p),
                         "autoencoder's decoder")


def make_decoder_fn(decoder, ae_sha: str, grid: int, backend: str = "eager", device="cpu", precision: str = "fp32",
                    batch_size: int = 16):
    """``image = f(z)`` for the autoencoder's ``decoder`` with the named backend (not ``auto``: the caller passes
    what the denoiser resolved to). Carries ``backend`` and ``precision`` (what runs)."""
    device = torch.device(device)
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
        net = decoder.to(device).eval()

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
        inner = openvino_model_fn(cached_decoder_onnx(decoder, ae_sha, grid), device, precision=precision)

        def fn(z):
            return torch.cat([inner(z[i:i + batch_size]) for i in range(0, len(z), batch_size)])
    elif backend in ("onnx", "tensorrt"):
        from .onnx import onnx_model_fn

        if backend == "tensorrt":
            if device.type != "cuda":
                raise FastsynthError("the tensorrt backend needs a CUDA GPU (--device cuda)")
            from .tensorrt import engine_cache_dir

            from .padding import fixed_batch

            inner = fixed_batch(onnx_model_fn(cached_decoder_onnx(decoder, ae_sha, grid), device, precision,
                                              tensorrt=True,
                                              trt_cache=engine_cache_dir(ae_sha, batch_size, precision, "decoder")),
                                batch_size)
        else:
            inner = onnx_model_fn(cached_decoder_onnx(decoder, ae_sha, grid), device, "fp32")
            precision = "fp32"

        def fn(z):
            return torch.cat([inner(z[i:i + batch_size]).cpu() for i in range(0, len(z), batch_size)])
    else:
        raise FastsynthError(f"decoder backend {backend!r}: choose eager, onnx, openvino or tensorrt")
    fn.backend, fn.precision = backend, precision
    return fn
