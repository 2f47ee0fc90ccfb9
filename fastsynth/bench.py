"""Throughput benchmark: network evaluations per second per backend and batch size, end-to-end pairs/s,
achieved FLOP/s against the device's peak, and two baselines measured in the same run.

- per-eval: median over ``repeats`` timed calls after a warm-up (CUDA synchronised), per backend x batch size;
- end to end: one full ``sample()`` of a batch + mask decoding + PNG encoding with the default sampler/steps;
- baselines: (1) the usual diffusers loop: eager fp32, contiguous memory format, DDIM 50 steps;
  (2) the reference paper: DDPM 200 respaced steps with RePaint resampling (jump length 10, 10 resamples)
  for inpainting. For the slow baselines the pairs/s is the measured per-eval time of that configuration
  times its NFE (the NFE is counted from diffusers' RePaintScheduler), labelled ``derived``;
- every backend against the untuned baseline of the same run (``vs_untuned_baseline``): a tuned backend that is
  slower is reported as slower.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .utils import cpu_info

# dense bf16/fp16 tensor-core peaks (FLOP/s) of the GPUs we may be lent; CPU peak is measured (fp32 GEMM)
GPU_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def flops_per_eval(model, resolution: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net = model.float().cpu().eval()
    x = torch.zeros(1, 4, resolution, resolution)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x, torch.tensor([500]), torch.zeros(1, 8, resolution, resolution))
    return int(fc.get_total_flops())


def cpu_peak_flops(seconds: float = 1.0) -> float:
    """Achievable fp32 FLOP/s of this CPU: a large GEMM with torch's BLAS (the practical ceiling)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t0)


def device_peak(device: torch.device, precision: str) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for k, v in GPU_PEAKS.items():
            if k in name:
                peak = v if precision in ("bf16", "fp16", "auto") else v / 2  # tf32 dense is half
                return peak, f"{name} datasheet dense {'bf16' if peak == v else 'tf32'}"
        return float("nan"), f"{name} (peak unknown)"
    return cpu_peak_flops(), "measured fp32 GEMM (1024^3, torch BLAS)"


def repaint_nfe(steps: int = 200, jump_length: int = 10, jump_n_sample: int = 10) -> int:
    from diffusers import RePaintScheduler

    s = RePaintScheduler(num_train_timesteps=1000)
    s.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
    ts = s.timesteps.tolist()
    # the paper's loop calls the network for every t with t_prev < t (forward in time are re-noising jumps)
    return sum(1 for i, t in enumerate(ts) if i == 0 or t < ts[i - 1])


def environment(device: torch.device) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(p):
        try:
            return version(p)
        except PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:
        commit = None
    cpu = cpu_info()  # the CPU model and its AVX2 / AVX-512 / AVX512_BF16 / VNNI / AMX flags: rankings differ
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU: {cpu['model']}",
        "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "fastsynth": __version__, "git_commit": commit, "torch": torch.__version__,
        "diffusers": v("diffusers"), "onnxruntime": v("onnxruntime") or v("onnxruntime-gpu"),
        "tensorrt": v("tensorrt"), "python": platform.python_version(),
    }


def random_model_dir(preset: str, resolution: int, seed: int = 0) -> Path:
    """A model folder with random weights of ``preset`` at ``resolution`` (for speed measurements only: a
    GPU-sized network without a trained checkpoint). Built once, deterministically from ``seed``, under
    ``$FASTSYNTH_CACHE/random-models/`` so its ONNX export / TensorRT engines are cached like a real model's."""
    from .config import model_config_for
    from .models import Denoiser, save_model
    from .models.denoiser import WEIGHTS_NAME
    from .utils import cache_dir

    cfg = model_config_for(preset, resolution)  # a clear error for an unknown preset / bad resolution
    out = cache_dir() / "random-models" / f"{preset}-r{resolution}-seed{seed}"
    if not (out / WEIGHTS_NAME).exists():
        import shutil

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = Denoiser(cfg)
        meta = {"fastsynth_version": __version__, "resolution": resolution,
                "random_weights": {"preset": preset, "seed": seed,
                                   "note": "untrained: for throughput measurements only"}}
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")  # complete or absent, even if killed
        save_model(net, tmp, meta=meta, card=f"# random {preset} denoiser at {resolution}x{resolution}\n\n"
                                               "Untrained weights, for throughput measurements only.\n")
        try:
            os.replace(tmp, out)
        except OSError:  # another process made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def effective_precision(backend: str, precision: str, device: torch.device) -> str:
    """What a backend really runs for a ``--precision`` (``auto``: bf16/fp16 eager on a GPU, fp16 TensorRT;
    the onnx backend's graph is always fp32)."""
    from .runtime import resolve_backend, resolve_precision

    b = resolve_backend(backend, device, precision)
    if b == "onnx":
        return "fp32"
    if b == "tensorrt":
        from .runtime.tensorrt import trt_precision

        return trt_precision(precision)
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[resolve_precision(precision, device)]


def compare_with_untuned(records: list) -> list[dict]:
    """Each backend's per-evaluation time against the untuned baseline (eager, NCHW) measured in the same run at the
    same batch size: ``speedup`` = baseline ms / its ms, and ``verdict`` "slower" when a tuned backend loses to it
    (reported, never hidden)."""
    base = {r["batch_size"]: r["ms_per_eval"] for r in records
            if r.get("scenario") == "baseline_diffusers_loop" and r.get("ms_per_eval")}
    out = []
    for r in records:
        if r.get("scenario") == "per_eval" and r.get("ms_per_eval") and r.get("batch_size") in base:
            s = base[r["batch_size"]] / r["ms_per_eval"]
            out.append({"backend": r["backend"], "batch_size": r["batch_size"], "ms_per_eval": r["ms_per_eval"],
                        "untuned_ms_per_eval": base[r["batch_size"]], "speedup": s,
                        "verdict": "faster" if s > 1 else "slower" if s < 1 else "same"})
    return out


def run_bench(model: str | None = None, backends=("eager", "onnx"), batch_sizes=(32,), steps: int | None = None,
              sampler: str | None = None, device: str = "auto", precision: str = "fp32", repeats: int = 5,
              baselines: bool = True, log=print, preset: str | None = None, resolution: int | None = None) -> dict:
    """Throughput of ``model`` (default: bundled), or with ``preset``: of a random-weight network of that preset
    at ``resolution`` (default 256), e.g. the GPU-sized ``paper`` network, whose speed needs no training."""
    from .errors import FastsynthError
    from .models import load_model, resolve_model_dir
    from .models.denoiser import WEIGHTS_NAME
    from .utils import file_sha256, resolve_device
    from .runtime import make_model_fn
    from .sampling import decode_mask, make_scheduler, opening_size, resolve_sampler, sample
    from .dataset.writer import encode_png
    from .data.codec import tensor_to_image

    dev = resolve_device(device)
    if preset is not None:
        if model is not None:
            raise FastsynthError("give --model or --preset (a random-weight network), not both")
        mdir = random_model_dir(preset, resolution or 256)
    elif resolution is not None:
        raise FastsynthError("--resolution needs --preset (a saved model has its own resolution)")
    else:
        mdir = resolve_model_dir(model)
    sha = file_sha256(mdir / WEIGHTS_NAME)
    base_net, meta = load_model(mdir)
    cfg = base_net.config
    res = cfg.resolution
    sampler, steps, grid = resolve_sampler(sampler, steps, meta)
    fl = flops_per_eval(base_net, res)
    peak, peak_src = device_peak(dev, precision)
    env = environment(dev)
    log(f"{env['device']}, {env['torch_threads']} threads; model {mdir} ({res}x{res}, "
        f"{fl / 1e9:.3f} GFLOP per evaluation); peak {peak / 1e9:.0f} GFLOP/s ({peak_src})")
    records = []

    def inputs(b):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(b, 4, res, res, generator=g).to(dev), torch.full((b,), 500, device=dev),
                torch.zeros(b, 8, res, res).to(dev))

    def rec(**kw):
        r = {"resolution": res, "precision": precision, "flops_per_eval": fl, "device_peak_flops": peak,
             "peak_source": peak_src, **kw}
        if r.get("evals_per_s"):
            r["achieved_flops"] = r["evals_per_s"] * fl
            r["fraction_of_peak"] = r["achieved_flops"] / peak if peak == peak else None
        records.append(r)
        log(" | ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k in (
            "scenario", "backend", "batch_size", "nfe", "ms_per_eval", "evals_per_s", "pairs_per_s",
            "fraction_of_peak", "build_s", "derived")))
        return r

    per_eval = {}
    for backend in backends:
        for b in batch_sizes:
            net, _ = load_model(mdir)
            t0 = time.perf_counter()
            try:
                fn = make_model_fn(net, backend, dev, precision, batch_size=b, model_sha=sha)
                x, t, c = inputs(b)
                first = time.perf_counter()
                fn(x, t, c)  # first call: compile / engine build happens here for lazy backends
                _sync(dev)
                build_s = time.perf_counter() - t0
                first_call_s = time.perf_counter() - first
            except Exception as exc:  # a backend missing here is reported, not fatal
                log(f"{backend}: skipped ({exc})")
                records.append({"scenario": "per_eval", "backend": backend, "batch_size": b, "skipped": str(exc)})
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            times = time_calls(lambda: fn(x, t, c), dev, repeats)
            med = statistics.median(times)
            per_eval[(backend, b)] = med
            if dev.type == "cuda":
                mem = torch.cuda.max_memory_allocated(dev)
            else:  # the process's peak resident set so far (an upper bound for this configuration)
                import resource

                mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            rec(scenario="per_eval", backend=backend, batch_size=b,
                effective_precision=effective_precision(backend, precision, dev), ms_per_eval=1000 * med,
                evals_per_s=b / med, build_s=build_s, first_call_s=first_call_s, repeats=repeats,
                times_s=times, peak_memory_bytes=mem)
            if b == batch_sizes[-1]:
                # end to end: sampling + mask decoding + PNG encoding of one batch
                sch = make_scheduler(sampler, cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type,
                                     grid=grid)
                noise = torch.randn(b, 4, res, res, generator=torch.Generator().manual_seed(1)).to(dev)

                def e2e():
                    x0 = sample(fn, sch, noise, c, steps).float().cpu()
                    m = decode_mask(x0[:, 3:], 0.0, opening_size(res))
                    for im, mk in zip(tensor_to_image(x0[:, :3]), m.numpy()):
                        encode_png(im), encode_png(mk)

                et = statistics.median(time_calls(e2e, dev, max(1, repeats // 2), warmup=1))
                rec(scenario="end_to_end", backend=backend, batch_size=b, sampler=sampler, nfe=steps,
                    pairs_per_s=b / et, seconds_per_batch=et, evals_per_s=b * steps / et)

    if baselines:
        b = batch_sizes[-1]
        # (1) the usual diffusers loop: eager, contiguous (NCHW) memory format, DDIM 50 steps
        net, _ = load_model(mdir)
        net = net.to(dev).eval()
        x, t, c = inputs(b)

        @torch.inference_mode()
        def plain():
            return net(x, t, c)

        med = statistics.median(time_calls(plain, dev, repeats))
        rec(scenario="baseline_diffusers_loop", backend="eager (NCHW, no tuning)", batch_size=b, sampler="ddim",
            nfe=50, ms_per_eval=1000 * med, evals_per_s=b / med, pairs_per_s=b / (50 * med), derived=True)
        # (2) the paper: DDPM 200 respaced steps + RePaint resampling, eager
        nfe = repaint_nfe()
        rec(scenario="baseline_paper_repaint", backend="eager (NCHW, no tuning)", batch_size=b,
            sampler="ddpm200+repaint(j=10,r=10)", nfe=nfe, ms_per_eval=1000 * med, evals_per_s=b / med,
            pairs_per_s=b / (nfe * med), derived=True)
    vs_untuned = compare_with_untuned(records)
    for c in vs_untuned:
        log(f"{c['backend']} (batch {c['batch_size']}): {c['speedup']:.2f}x the untuned baseline per evaluation "
            f"({c['ms_per_eval']:.1f} vs {c['untuned_ms_per_eval']:.1f} ms)"
            + (": SLOWER than the untuned baseline in this run" if c["verdict"] == "slower" else ""))
    return {"environment": env, "model": str(mdir), "model_sha256": sha,
            "random_weights": meta.get("random_weights"), "records": records, "vs_untuned_baseline": vs_untuned}


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def write_json(result: dict, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2) + "\n")
