"""TensorRT through ONNX Runtime's TensorRT execution provider (the ``tensorrt`` backend).

One home for what ``generate`` / ``bench`` / ``filter`` and ``export --format tensorrt`` must agree on, so the
export warms exactly the engines generation reads:

- :func:`engine_cache_dir`: where the engines of (weights, batch size, precision, TensorRT version) live;
- :func:`trt_provider_options`: the provider options, with ``trt_bf16_enable`` only where the installed ONNX
  Runtime knows it;
- :func:`check_session_providers`: the providers a session really got. ONNX Runtime does not fail when it
  cannot start the TensorRT (or CUDA) provider: it logs a warning and runs the graph on the next provider in
  the list (CUDA, then CPU). fastsynth refuses that instead of silently benchmarking or generating on another
  backend than the one asked for.

The engine itself is named by ONNX Runtime from the ONNX file's *name* and graph, so both sides must also
build their session from the same cached ONNX file (``onnx.cached_onnx``): ``make_model_fn`` does both, and
``export`` calls ``make_model_fn``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FastsynthError
from ..utils import cache_dir

TRT_PRECISIONS = ("fp32", "fp16", "bf16")
# ``trt_bf16_enable``: added to the TensorRT EP by onnxruntime PR #24743 (May 2025), after 1.22 was released;
# older versions reject an unknown TensorRT option when the session is created.
TRT_BF16_MIN_ORT = (1, 23)


def trt_precision(precision: str) -> str:
    """The TensorRT build precision for a ``--precision`` value (``auto`` -> fp16, TensorRT's usual choice)."""
    p = "fp16" if precision == "auto" else precision
    if p not in TRT_PRECISIONS:
        raise FastsynthError(f"--precision {precision!r} with TensorRT: choose one of {', '.join(TRT_PRECISIONS)} "
                             "or auto")
    return p


def trt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"):
        try:
            return version(pkg)
        except PackageNotFoundError:
            continue
    return "none"


def engine_cache_dir(model_sha: str, batch_size: int, precision: str, kind: str = "denoiser") -> Path:
    """``$FASTSYNTH_CACHE/tensorrt/<kind-><sha[:16]>-b<batch>-<precision>-trt<version>``: engines depend on the
    weights, the (static) batch size, the precision and the TensorRT version."""
    prefix = "" if kind == "denoiser" else f"{kind}-"
    return (cache_dir() / "tensorrt"
            / f"{prefix}{model_sha[:16]}-b{batch_size}-{trt_precision(precision)}-trt{trt_version()}")


def ort_version(ort) -> tuple[int, int]:
    """(major, minor) of an imported onnxruntime module; (0, 0) if unreadable."""
    try:
        major, minor = str(ort.__version__).split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except (AttributeError, ValueError):
        return 0, 0


def trt_provider_options(device_index: int, cache: Path, precision: str, ort_ver: tuple[int, int]) -> dict:
    """The TensorRT EP options for one engine cache and precision (ONNX Runtime's option names)."""
    p = trt_precision(precision)
    opts = {"device_id": device_index, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
            "trt_fp16_enable": p == "fp16"}
    if tuple(ort_ver) >= TRT_BF16_MIN_ORT:
        opts["trt_bf16_enable"] = p == "bf16"
    elif p == "bf16":
        raise FastsynthError(
            f"--precision bf16 with TensorRT needs onnxruntime-gpu >= {'.'.join(map(str, TRT_BF16_MIN_ORT))} "
            f"(the trt_bf16_enable option); this one is {'.'.join(map(str, ort_ver))}. Use --precision fp16 or "
            "fp32, or upgrade onnxruntime-gpu")
    return opts


def providers_for(device, tensorrt: bool, precision: str, trt_cache: Path | None, ort) -> list:
    """The provider list to ask ONNX Runtime for (see :func:`check_session_providers` for what it gave)."""
    avail = ort.get_available_providers()
    idx = device.index or 0
    if device.type == "cuda":
        if tensorrt:
            if "TensorrtExecutionProvider" not in avail:
                raise FastsynthError("the tensorrt backend needs onnxruntime-gpu (built with TensorRT) and the "
                                     "tensorrt package: pip install 'fastsynth[gpu]' in an environment without "
                                     f"the CPU onnxruntime (this one offers {avail})")
            if trt_cache is None:
                raise FastsynthError("internal: the tensorrt backend needs an engine cache folder")
            opts = trt_provider_options(idx, trt_cache, precision, ort_version(ort))
            return [("TensorrtExecutionProvider", opts), ("CUDAExecutionProvider", {"device_id": idx})]
        if "CUDAExecutionProvider" not in avail:
            raise FastsynthError("ONNX Runtime here has no CUDA provider; install onnxruntime-gpu "
                                 "(pip install 'fastsynth[gpu]', in an environment without onnxruntime)")
        return [("CUDAExecutionProvider", {"device_id": idx})]
    if tensorrt:
        raise FastsynthError("the tensorrt backend needs a CUDA GPU (--device cuda)")
    return ["CPUExecutionProvider"]


_CHECKED_FLAGS = ("trt_fp16_enable", "trt_bf16_enable", "trt_engine_cache_enable")


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true")


def check_session_providers(sess, providers: list) -> list[str]:
    """Raise a FastsynthError unless ``sess`` runs on the first provider asked for, with the precision flags
    asked for; returns the providers it got. CPU sessions are not checked (CPU is always there)."""
    name, opts = providers[0] if isinstance(providers[0], tuple) else (providers[0], {})
    got = list(sess.get_providers())
    if name == "CPUExecutionProvider":
        return got
    if name not in got:
        if name == "TensorrtExecutionProvider":
            why = ("ONNX Runtime could not start its TensorRT provider, usually because the TensorRT libraries "
                   "(libnvinfer) are not found or do not match onnxruntime-gpu's TensorRT version: install the "
                   "matching `tensorrt` wheel or put its lib folder on LD_LIBRARY_PATH (ONNX Runtime's warning "
                   "above names the missing library)")
        else:
            why = ("ONNX Runtime could not start its CUDA provider, usually because the CUDA / cuDNN libraries it "
                   "was built for are not found (ONNX Runtime's warning above names the missing library)")
        raise FastsynthError(f"{why}. The session fell back to {got}; refusing to run the "
                             f"{'tensorrt' if name.startswith('Tensorrt') else 'onnx (CUDA)'} backend on them")
    try:
        actual = sess.get_provider_options().get(name, {})
    except Exception:  # an ONNX Runtime without the call: the provider check above is what we can do
        actual = {}
    wrong = {k: (opts[k], actual[k]) for k in _CHECKED_FLAGS
             if k in opts and k in actual and _truthy(opts[k]) != _truthy(actual[k])}
    if wrong:
        desc = ", ".join(f"{k}: asked {a}, got {b}" for k, (a, b) in wrong.items())
        raise FastsynthError(f"ONNX Runtime's {name} changed the precision settings ({desc}); e.g. TensorRT turns "
                             "bf16 off on GPUs before compute capability 8.0. Use another --precision")
    return got


def preload_tensorrt() -> None:
    """Load libnvinfer & co. from the pip ``tensorrt`` wheels (the ``tensorrt_libs`` package, off the loader's
    path) into the process, so ONNX Runtime's TensorRT provider finds them without LD_LIBRARY_PATH. Best
    effort: a missing library is reported by :func:`check_session_providers` after the session is made."""
    import ctypes
    import glob
    import os

    try:
        import tensorrt_libs
    except Exception:
        return
    for d in getattr(tensorrt_libs, "__path__", []):
        for pattern in ("libnvinfer.so.*", "libnvinfer_plugin.so.*", "libnvonnxparser.so.*"):
            for lib in sorted(glob.glob(os.path.join(d, pattern))):
                try:
                    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    pass
