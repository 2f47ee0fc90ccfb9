"""Runtime backends: each turns a Denoiser into ``eps = f(x_t, t, cond)`` (float32 in, float32 out).

One file per backend; heavy packages are imported inside them. ``make_eps_fn`` is the registry.
"""

from __future__ import annotations

import torch

from ..errors import FastsynthError

BACKENDS = ("eager",)
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


def make_eps_fn(model, backend: str = "eager", device: torch.device | str = "cpu", precision: str = "fp32",
                batch_size: int | None = None):
    device = torch.device(device)
    dtype = resolve_precision(precision, device)
    if backend == "eager":
        from .eager import eager_eps_fn

        return eager_eps_fn(model, device, dtype)
    raise FastsynthError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
