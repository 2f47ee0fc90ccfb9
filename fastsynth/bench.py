"""Throughput benchmark: network evaluations per second per backend and batch size, end-to-end pairs/s,
achieved FLOP/s against the device's peak, and two baselines measured in the same run.

- per-eval: median over ``repeats`` timed calls after a warm-up (CUDA synchronised), per backend x batch size;
  the backends of one batch size are timed side by side (one call of each in turn, ``repeats`` rounds) and each
  reports the median of its per-round ratio to the first backend, so a machine whose speed drifts (other jobs)
  still ranks them fairly; a backend may carry its precision (``onnx:int8``);
- end to end: one full ``sample()`` of a batch + mask decoding + PNG encoding with the default sampler/steps,
  also side by side;
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
    g, dc = net.config.grid, net.config.data_channels  # a latent model runs on its grid (resolution / 8)
    x = torch.zeros(1, dc, g, g)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x, torch.tensor([500]), torch.zeros(1, 2 * dc, g, g))
    return int(fc.get_total_flops())


def decoder_flops(decoder, grid: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        decoder.float().cpu().eval()(torch.zeros(1, decoder.net[1].in_channels, grid, grid))
    return int(fc.get_total_flops())


def cpu_peak_flops(seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """Achievable FLOP/s of this CPU in ``dtype``: a large GEMM with torch's BLAS / oneDNN (the practical ceiling;
    for bf16 that is AVX512_BF16 or AMX where the CPU has them)."""
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
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
    if precision == "bf16":
        from fastsynth.utils import cpu_has_bf16

        if cpu_has_bf16():  # AMX / AVX512_BF16: the fp32 ceiling would put bf16 rows above 100%
            return cpu_peak_flops(dtype=torch.bfloat16), "measured bf16 GEMM (1024^3, torch oneDNN)"
        return float("nan"), "no native bf16 on this CPU (peak not measured)"
    if precision == "int8":
        return float("nan"), "int8 peak not measured"
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
        "openvino": v("openvino"), "tensorrt": v("tensorrt"), "python": platform.python_version(),
    }


def random_model_dir(preset: str, resolution: int, seed: int = 0) -> Path:
    """A model folder with random weights of ``preset`` at ``resolution`` (for speed measurements only: a
    GPU-sized network without a trained checkpoint). Built once, deterministically from ``seed``, under
    ``$FASTSYNTH_CACHE/random-models/`` so its ONNX export / TensorRT engines are cached like a real model's."""
    from .config import model_config_for
    from .models import Denoiser, save_model
    from .models.denoiser import WEIGHTS_NAME
    from .utils import cache_dir

    if preset == "latent":  # a latent model on the bundled autoencoder (pool mask, unit latent statistics)
        from .models.autoencoder import LATENT_CHANNELS, autoencoder_sha256
        from .models.latent import latent_config

        cfg = latent_config(model_config_for(preset, resolution, "taef2"), "taef2", autoencoder_sha256("taef2"),
                            "pool", [0.0] * LATENT_CHANNELS, [1.0] * LATENT_CHANNELS)
    else:
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

    if precision == "int8":
        return "int8"
    b = resolve_backend(backend, device, precision)
    if b in ("onnx", "openvino"):
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


def parse_backend(spec: str, precision: str) -> tuple[str, str]:
    """``onnx`` -> (onnx, the run's --precision); ``onnx:int8`` -> (onnx, int8)."""
    from .errors import FastsynthError
    from .runtime import BACKENDS, PRECISIONS

    name, _, prec = spec.partition(":")
    prec = prec or precision
    if name not in BACKENDS or prec not in PRECISIONS:
        raise FastsynthError(f"--backends {spec!r}: a backend from {', '.join(BACKENDS)}, optionally with a "
                             f"precision from {', '.join(PRECISIONS)} (e.g. onnx:int8)")
    return name, prec


def side_by_side(fns: list, device: torch.device, repeats: int) -> list[list[float]]:
    """``repeats`` rounds of one timed call of each function in turn (after each one's warm-up elsewhere)."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            out[k].append(time.perf_counter() - t0)
    return out


def paired_ratio(times: list[float], ref: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(times, ref))


def run_bench(model: str | None = None, backends=("eager", "onnx"), batch_sizes=(32,), steps: int | None = None,
              sampler: str | None = None, device: str = "auto", precision: str = "fp32", repeats: int = 5,
              baselines: bool = True, log=print, preset: str | None = None, resolution: int | None = None,
              end_to_end: bool = True, choose: bool = False) -> dict:
    """Throughput of ``model`` (default: bundled), or with ``preset``: of a random-weight network of that preset
    at ``resolution`` (default 256), e.g. the GPU-sized ``paper`` network, whose speed needs no training.
    ``choose``: store the fastest backend per precision (largest batch size) as this machine's ``auto`` choice."""
    from .errors import FastsynthError
    from .models import load_model, resolve_model_dir
    from .models.denoiser import WEIGHTS_NAME
    from .utils import file_sha256, resolve_device
    from .runtime import make_model_fn
    from .sampling import decode_mask, make_scheduler, opening_size, resolve_sampler, sample
    from .dataset.writer import encode_png
    from .data.codec import tensor_to_image

    specs = [parse_backend(b, precision) for b in backends]
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

    side, dc = cfg.grid, cfg.data_channels  # the tensor the network sees (a latent model's grid)
    space = None
    if cfg.autoencoder:  # a latent model: the decoder is timed apart (scenario "decoder") and in end to end
        from .models.latent import model_space

        space = model_space(cfg, model_dir=mdir)

    def inputs(b):
        g = torch.Generator().manual_seed(0)
        return (torch.randn(b, dc, side, side, generator=g).to(dev), torch.full((b,), 500, device=dev),
                torch.zeros(b, 2 * dc, side, side).to(dev))

    peaks = {precision: (peak, peak_src)}
    for _, prec in specs:  # measured up front, not between timed backends
        if prec not in peaks:
            peaks[prec] = device_peak(dev, prec)

    def rec(**kw):  # each row against the peak of its own precision (bf16 on AMX is far above fp32's)
        peak, src = peaks[kw.get("precision", precision)]
        r = {"resolution": res, "precision": precision, "flops_per_eval": fl, "device_peak_flops": peak,
             "peak_source": src, **kw}
        if r.get("evals_per_s"):
            r["achieved_flops"] = r["evals_per_s"] * fl
            r["fraction_of_peak"] = r["achieved_flops"] / peak if peak == peak else None
        records.append(r)
        log(" | ".join(f"{k}={_fmt(v)}" for k, v in r.items() if k in (
            "scenario", "backend", "precision", "batch_size", "nfe", "ms_per_eval", "evals_per_s",
            "pairs_per_s", "ms_per_image", "images_per_s", "ratio_to_first", "fraction_of_peak", "build_s", "derived")))
        return r

    per_eval = {}
    for b in batch_sizes:
        built = []  # (backend, precision, fn, build_s, first_call_s)
        x, t, c = inputs(b)
        for backend, prec in specs:
            net, _ = load_model(mdir)
            t0 = time.perf_counter()
            try:
                fn = make_model_fn(net, backend, dev, prec, batch_size=b, model_sha=sha, meta=meta)
                first = time.perf_counter()
                fn(x, t, c)  # first call: compile / engine build happens here for lazy backends
                _sync(dev)
                built.append((backend, prec, fn, time.perf_counter() - t0, time.perf_counter() - first))
            except Exception as exc:  # a backend missing (or refused) here is reported, not fatal
                log(f"{backend}:{prec}: skipped ({exc})")
                records.append({"scenario": "per_eval", "backend": backend, "precision": prec, "batch_size": b,
                                "skipped": str(exc)})
        if not built:
            continue
        for _, _, fn, _, _ in built:  # a second warm-up call each, then the side-by-side rounds
            fn(x, t, c)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = side_by_side([(lambda f=fn: f(x, t, c)) for _, _, fn, _, _ in built], dev, repeats)
        if dev.type == "cuda":
            mem = torch.cuda.max_memory_allocated(dev)
        else:  # the process's peak resident set so far (all backends of this batch size live at once)
            import resource

            mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        for k, (backend, prec, fn, build_s, first_call_s) in enumerate(built):
            med = statistics.median(times[k])
            per_eval[(backend, prec, b)] = med
            extra = {"gate": _gate_summary(fn.gate)} if getattr(fn, "gate", None) else {}
            rec(scenario="per_eval", backend=backend, batch_size=b, precision=prec,
                effective_precision=getattr(fn, "precision", effective_precision(backend, prec, dev)),
                providers=getattr(fn, "providers", None), ms_per_eval=1000 * med, evals_per_s=b / med,
                ratio_to_first=paired_ratio(times[k], times[0]), first=f"{built[0][0]}:{built[0][1]}",
                side_by_side=True, build_s=build_s, first_call_s=first_call_s, repeats=repeats, times_s=times[k],
                peak_memory_bytes=mem, **extra)
        decoders = {}
        if space is not None:  # the autoencoder's decoder on each backend, reported apart from the denoiser
            from .runtime.decoder import make_decoder_fn

            dfl = decoder_flops(space.ae.decoder, side)
            z = torch.randn(b, cfg.latent_channels, side, side, generator=torch.Generator().manual_seed(2))
            for backend, prec, fn, _, _ in built:
                t0 = time.perf_counter()
                dfn = make_decoder_fn(space.ae.decoder, space.ae.sha256, side, fn.backend, dev, fn.precision,
                                      batch_size=b)
                dfn(z)
                decoders[(backend, prec)] = (dfn, time.perf_counter() - t0)
            dt = side_by_side([(lambda f=d[0]: f(z)) for d in decoders.values()], dev, repeats)
            for k, ((backend, prec), (dfn, build_s)) in enumerate(decoders.items()):
                med = statistics.median(dt[k])
                rec(scenario="decoder", backend=backend, batch_size=b, precision=prec,
                    effective_precision=dfn.precision, ms_per_image=1000 * med / b, images_per_s=b / med,
                    decoder_flops_per_image=dfl, achieved_flops=b * dfl / med, build_s=build_s,
                    ratio_to_first=paired_ratio(dt[k], dt[0]), side_by_side=True, times_s=dt[k])
        if b == batch_sizes[-1] and end_to_end:
            # end to end: sampling + decoding (image, mask) + PNG encoding of one batch, side by side
            sch = make_scheduler(sampler, cfg.num_train_timesteps, cfg.beta_schedule, cfg.prediction_type, grid=grid)
            noise = torch.randn(b, dc, side, side, generator=torch.Generator().manual_seed(1)).to(dev)
            ci = cfg.state_image_channels

            def e2e(fn, key):
                x0 = sample(fn, sch, noise, c, steps).float().cpu()
                if space is None:
                    m = decode_mask(x0[:, ci:], 0.0, opening_size(res))
                    rgb = x0[:, :ci]
                else:
                    m = decode_mask(space.grid_to_logits(x0[:, ci:]), 0.0, opening_size(res))
                    rgb = decoders[key][0](x0[:, :ci] * space.std + space.mean)
                for im, mk in zip(tensor_to_image(rgb if rgb.shape[1] == 3 else rgb.expand(-1, 3, -1, -1)),
                                  m.numpy()):
                    encode_png(im), encode_png(mk)

            for backend, prec, fn, _, _ in built:
                e2e(fn, (backend, prec))  # warm-up
            et = side_by_side([(lambda f=fn, k=(bk, pr): e2e(f, k)) for bk, pr, fn, _, _ in built], dev,
                              max(1, repeats // 2))
            for k, (backend, prec, fn, _, _) in enumerate(built):
                med = statistics.median(et[k])
                rec(scenario="end_to_end", backend=backend, batch_size=b, precision=prec, sampler=sampler,
                    nfe=steps, pairs_per_s=b / med, seconds_per_batch=med, evals_per_s=b * steps / med,
                    ratio_to_first=paired_ratio(et[k], et[0]), side_by_side=True, times_s=et[k])

    choice = None
    if choose and dev.type == "cpu":
        from .runtime.choice import write_choice

        b = batch_sizes[-1]
        ms = {(bk, pr): 1000 * v for (bk, pr, bb), v in per_eval.items() if bb == b}
        if ms:
            choice = str(write_choice(ms, b, sha))
            log(f"auto's choice for this machine written to {choice}")
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
    import sys

    return {"environment": env, "command": " ".join(["fastsynth", *sys.argv[1:]]) if sys.argv[1:2] == ["bench"]
            else None, "model": str(mdir), "model_sha256": sha, "random_weights": meta.get("random_weights"),
            "choice_file": choice, "records": records, "vs_untuned_baseline": vs_untuned}


def _gate_summary(gate: dict) -> dict:
    """The int8 gate's figures and verdicts, for a bench record."""
    return {"runtime": gate["runtime"], "figures": gate["figures"], "verdict": gate["verdict"],
            "accepted_output_level": gate["accepted_output_level"], "data_level": gate.get("data_level"),
            "accepted": gate["accepted"]}


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def write_json(result: dict, path: str | os.PathLike) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2) + "\n")
