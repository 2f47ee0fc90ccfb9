"""Runtime backends: each turns a Denoiser into ``out = f(x_t, t, cond)`` (the model output: v or eps), or a
segmenter into ``logits = f(image)`` (float32 in, float32 out).

One file per backend; heavy packages are imported inside them. ``make_model_fn`` is the registry.

Precisions: fp32 / bf16 / fp16 as the network's dtype; ``int8`` (CPU, the denoiser only): the statically quantised
ONNX graph (``int8.py``) run by ONNX Runtime (``--backend onnx``) or OpenVINO (``--backend openvino``), only when
its accuracy gate accepts it (``fastsynth.runtime.gates``; refused with the figures otherwise).
``bf16`` on the CPU also runs with OpenVINO (its bf16 inference precision; only on CPUs with AVX512_BF16 or AMX).
``auto`` on CPU: the backend that ``fastsynth bench --choose`` measured fastest on this machine (``choice.py``),
else ONNX Runtime fp32; ``--precision auto`` becomes int8 or bf16 only when that precision's gate accepts it at the
output and the data level and it was measured faster here.
"""

from __future__ import annotations

import torch

from ..errors import FastsynthError

BACKENDS = ("auto", "eager", "compile", "onnx", "openvino", "tensorrt")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
INT8_BACKENDS = ("onnx", "openvino")
# the reduced precisions ``--precision auto`` may pick on the CPU, each behind its accuracy gate (fastsynth.runtime.gates),
# and the backends that run them
GATED = {"int8": INT8_BACKENDS, "bf16": ("openvino",)}
SEGMENTER_BACKENDS = ("auto", "eager", "compile", "onnx", "tensorrt")  # openvino and int8: the denoiser only


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise FastsynthError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # CPU: resolve_runtime turns auto into bf16 / int8 only behind their gates
    if precision == "fp16" and device.type == "cpu":
        raise FastsynthError("--precision fp16 is not supported on CPU; use fp32 or bf16")
    if precision == "int8":
        if device.type != "cpu":
            raise FastsynthError("--precision int8 is a CPU path (ONNX Runtime / OpenVINO); on a GPU use fp16 or "
                                 "bf16")
        return torch.float32  # inputs and outputs stay float32; the graph inside is int8
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _installed(backend: str) -> bool:
    import importlib.util

    need = {"onnx": ("onnxruntime", "onnx", "onnxscript"), "openvino": ("openvino", "onnx", "onnxscript")}
    return all(importlib.util.find_spec(m) is not None for m in need.get(backend, ()))


def resolve_runtime(backend: str, device: torch.device | str, precision: str = "fp32", model_sha: str | None = None,
                    resolution: int | None = None, kind: str = "denoiser", model_dir=None) -> tuple[str, str]:
    """(backend, precision) that ``auto`` means here. CPU: the backend measured fastest on this machine for the
    precision (``fastsynth bench --choose``), else ONNX Runtime fp32 when installed (faster than eager, see
    benchmarks/), else eager. ``--precision auto`` on CPU: int8 when the denoiser ``model_sha`` passed its int8
    gate at the output and the data level on that backend and int8 was measured faster here (by
    ``choice.MARGIN``); the same for bf16 (OpenVINO, CPUs with native bf16); the fastest such; else fp32.
    Without any choice file (a fresh machine) bf16 stands in for "measured faster" on CPUs with native bf16: OpenVINO
    bf16 measured 1.8x ONNX Runtime fp32 there (README, "bf16 on CPU"); its gate may come shipped with the model
    (``model_dir``/gates). ``kind="segmenter"``: only the backends segmenters have."""
    device = torch.device(device)
    if device.type != "cpu":
        return ("eager" if backend == "auto" else backend), precision
    choice = None
    if backend == "auto" or precision == "auto":
        from .choice import read_choice

        choice = read_choice() or {}
    ms = (choice or {}).get("ms_per_eval", {})
    fastest = (choice or {}).get("fastest", {})
    if precision == "auto" and kind == "denoiser":
        precision = "fp32"
        cands = [(b, p) for p, bs in GATED.items() for b in bs if backend in ("auto", b) and f"{b}:{p}" in ms]
        base = (fastest.get("fp32") or {}).get("ms_per_eval") if backend == "auto" else ms.get(f"{backend}:fp32")
        if not choice and backend in ("auto", "openvino"):  # nothing measured here: the measured ranking of such CPUs
            from .choice import BF16_PRIOR

            ms, base, cands = {"openvino:bf16": BF16_PRIOR}, 1.0, [("openvino", "bf16")]
        elif backend in ("auto", "openvino") and "openvino:bf16" not in ms and base:
            # a choice measured without OpenVINO bf16 (``bench --choose`` with its default backends) keeps the
            # measured ranking of such CPUs for it, rather than silently dropping a bf16 CPU to fp32
            from .choice import BF16_PRIOR

            ms = {**ms, "openvino:bf16": BF16_PRIOR * base}
            cands.append(("openvino", "bf16"))
        if cands and base and model_sha and resolution:
            from .gates import gate_status
            from ..utils import cpu_has_bf16
            from .choice import MARGIN

            for b, p in sorted(cands, key=lambda bp: ms[f"{bp[0]}:{bp[1]}"]):  # the fastest accepted one
                if ms[f"{b}:{p}"] >= MARGIN * base or not _installed(b) or (p == "bf16" and not cpu_has_bf16()):
                    continue
                st = gate_status(model_sha, resolution, b, p, model_dir)
                if st and st["accepted"]:
                    precision = p
                    backend = b if backend == "auto" else backend
                    break
    if backend == "auto":
        want = (fastest.get(precision) or {}).get("backend")
        if want and want != "auto" and _installed(want) and (precision not in GATED or want in GATED[precision]) \
                and (kind == "denoiser" or want in SEGMENTER_BACKENDS):
            backend = want
        elif precision in ("fp32", "int8", "auto") and _installed("onnx"):
            backend = "onnx"
        else:
            backend = "eager"
    return backend, precision


def resolve_backend(backend: str, device: torch.device, precision: str = "fp32", kind: str = "denoiser") -> str:
    """The backend ``auto`` means here (see :func:`resolve_runtime`)."""
    return resolve_runtime(backend, device, precision, kind=kind)[0]


def make_model_fn(model, backend: str = "eager", device: torch.device | str = "cpu", precision: str = "fp32",
                  batch_size: int | None = None, model_sha: str | None = None, meta: dict | None = None):
    """``out = f(x_t, t, cond)`` for a Denoiser on ``device`` with the named backend. ``meta``: the model's
    metadata (its own sampler), for the int8 gate's sampler check. The function carries ``backend`` and
    ``precision`` (what ran), and for int8 ``gate`` (the gate record)."""
    return _make_fn(model, backend, device, precision, batch_size, model_sha, "denoiser", None, meta)


def make_segmenter_fn(model, resolution: int, backend: str = "eager", device: torch.device | str = "cpu",
                      precision: str = "fp32", batch_size: int | None = None, model_sha: str | None = None):
    """``logits = f(image)`` (ImageNet-normalised float [B, 3, H, W]) for a segmenter, with the same backends
    as generation, so filtering and downstream inference run as fast as sampling."""
    if precision == "int8":
        raise FastsynthError("--precision int8 is for the denoiser (generation); segmenters run fp32, bf16 or fp16")
    return _make_fn(model, backend, device, precision, batch_size, model_sha, "segmenter", resolution)


def _make_fn(model, backend, device, precision, batch_size, model_sha, kind, resolution, meta=None):
    device = torch.device(device)
    if kind == "denoiser" and precision == "auto" and device.type == "cpu":
        from .choice import read_choice

        from ..utils import cpu_has_bf16

        choice = read_choice()
        # the weights' hash keys the gates: worth computing only where a gated precision can be picked
        gated = (cpu_has_bf16() and _installed("openvino")) if choice is None else \
            any(k.endswith(tuple(f":{p}" for p in GATED)) for k in choice.get("ms_per_eval", {}))
        if gated:
            model_sha = model_sha or _state_sha(model)
    backend, precision = resolve_runtime(backend, device, precision,
                                         model_sha if kind == "denoiser" else None,
                                         model.config.resolution if kind == "denoiser" else None, kind,
                                         (meta or {}).get("path"))
    dtype = resolve_precision(precision, device)
    fn = _build(model, backend, device, precision, dtype, batch_size, model_sha, kind, resolution, meta)
    fn.backend = backend
    if precision == "int8":
        fn.precision = "int8"
    elif backend == "tensorrt":
        from .tensorrt import trt_precision

        fn.precision = trt_precision(precision)
    else:
        fn.precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return fn


def _int8_fn(model, backend, device, model_sha, meta):
    if backend not in INT8_BACKENDS:
        raise FastsynthError(f"--precision int8 runs with --backend {' or '.join(INT8_BACKENDS)} (or auto) on the "
                             f"CPU, not {backend}")
    from .gates import describe, ensure_int8, runner

    sha = model_sha or _state_sha(model)
    path, gate = ensure_int8(model, meta, sha, backend)
    if not gate["accepted_output_level"]:
        raise FastsynthError(
            f"--precision int8 refused for this model on {gate['runtime']}: its accuracy gate failed against fp32 "
            f"({describe(gate)}; figures in {path.parent}). Use --precision fp32")
    fn = runner(path, backend, device)
    fn.gate, fn.onnx_path, fn.trt_cache = gate, path, None
    return fn


def _build(model, backend, device, precision, dtype, batch_size, model_sha, kind, resolution, meta):
    if precision == "int8":
        return _int8_fn(model, backend, device, model_sha, meta)
    if backend == "openvino":
        from .onnx import cached_onnx
        from .openvino import openvino_model_fn

        if kind != "denoiser":
            raise FastsynthError("the openvino backend runs the denoiser; segmenters: eager, compile, onnx, tensorrt")
        if precision not in ("fp32", "bf16", "auto"):
            raise FastsynthError(f"--precision {precision} with the openvino backend: use fp32, bf16 or int8")
        path = cached_onnx(model, model_sha or _state_sha(model), kind, resolution)
        bf16 = dtype == torch.bfloat16
        fn = openvino_model_fn(path, device, precision="bf16" if bf16 else "fp32")
        fn.onnx_path, fn.trt_cache = path, None
        if bf16:  # measured once per model (cached): what --precision auto needs before it may pick bf16
            from .gates import ensure_bf16

            fn.gate = ensure_bf16(model, meta, model_sha or _state_sha(model), "openvino")
        return fn
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
