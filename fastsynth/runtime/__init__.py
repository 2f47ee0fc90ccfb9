"""Runtime backends: each turns a Denoiser into ``out = f(x_t, t, cond)`` (the model output: v or eps), or a
segmenter into ``logits = f(image)`` (float32 in, float32 out).

One file per backend; heavy packages are imported inside them. ``make_model_fn`` is the registry.
"""

from __future__ import annotations

import torch

from ..errors import FastsynthError

BACKENDS = ("auto", "eager", "compile", "onnx", "tensorrt")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise FastsynthError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # bf16 convolutions are slower than fp32 on the CPUs we measured
    if precision == "fp16" and device.type == "cpu":
        raise FastsynthError("--precision fp16 is not supported on CPU; use fp32 or bf16")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def resolve_backend(backend: str, device: torch.device, precision: str = "fp32") -> str:
    """auto: ONNX Runtime on CPU when installed (faster than eager here, see benchmarks/), else eager."""
    if backend != "auto":
        return backend
    import importlib.util

    if device.type == "cpu" and precision in ("fp32", "auto") and all(
            importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript")):
        return "onnx"
    return "eager"


def make_model_fn(model, backend: str = "eager", device: torch.device | str = "cpu", precision: str = "fp32",
                  batch_size: int | None = None, model_sha: str | None = None):
    """``out = f(x_t, t, cond)`` for a Denoiser on ``device`` with the named backend."""
    return _make_fn(model, backend, device, precision, batch_size, model_sha, "denoiser", None)


def make_segmenter_fn(model, resolution: int, backend: str = "eager", device: torch.device | str = "cpu",
                      precision: str = "fp32", batch_size: int | None = None, model_sha: str | None = None):
    """``logits = f(image)`` (ImageNet-normalised float [B, 3, H, W]) for a segmenter, with the same backends
    as generation, so filtering and downstream inference run as fast as sampling."""
    return _make_fn(model, backend, device, precision, batch_size, model_sha, "segmenter", resolution)


def _make_fn(model, backend, device, precision, batch_size, model_sha, kind, resolution):
    device = torch.device(device)
    dtype = resolve_precision(precision, device)
    backend = resolve_backend(backend, device, precision)
    if backend == "eager":
        from .eager import eager_model_fn

        return eager_model_fn(model, device, dtype)
    if backend == "compile":
        from .compile import compile_model_fn

        return compile_model_fn(model, device, dtype, batch_size or 64)
    if backend in ("onnx", "tensorrt"):
        from .onnx import cached_onnx, onnx_model_fn

        if backend == "tensorrt" and device.type != "cuda":
            raise FastsynthError("the tensorrt backend needs a CUDA GPU (--device cuda)")
        sha = model_sha or _state_sha(model)
        # TensorRT names its engines after the ONNX file's name and graph: every caller (generate, bench,
        # filter, export --format tensorrt) must come through here to share the same file and engine cache
        path = cached_onnx(model, sha, kind, resolution)
        trt_cache = None
        if backend == "tensorrt":  # engines depend on weights, shape profile, precision and TensorRT version
            from .tensorrt import engine_cache_dir

            trt_cache = engine_cache_dir(sha, batch_size or 64, precision, kind)
        inner = onnx_model_fn(path, device, precision, tensorrt=backend == "tensorrt", trt_cache=trt_cache)
        fn = inner
        if backend == "tensorrt":  # one static shape profile per batch size: pad the last batch
            from .padding import fixed_batch

            fn = fixed_batch(inner, batch_size or 64)
        fn.session, fn.providers, fn.onnx_path, fn.trt_cache = inner.session, inner.providers, path, trt_cache
        return fn
    raise FastsynthError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def _state_sha(model) -> str:
    """A hash of the weights, for cache keys when the caller did not give the file's hash."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()
