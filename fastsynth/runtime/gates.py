"""int8 on CPU behind an accuracy gate: calibration inputs from the model's own sampler, the quantised file
(``runtime/int8.py``), and the gate that decides whether a runtime may use it.

The gate (``GATE``; figures stored next to the quantised file, one record per runtime):

1. outputs: the int8 network's outputs against fp32 (the ``onnx`` backend) on a fixed check set that shares
   nothing with the calibration inputs: the fp32 sampler's own pairs of the gate seeds, noised with fixed noise
   to 10 timesteps spread over 0..T-1, under three conditionings (none, the mask, inpainting);
   relative RMS error = ||int8 - fp32|| / ||fp32|| over the whole set;
2. whole sampler: the same seeds through the full default sampler (``generate``'s defaults: pairs, redrawn with
   guidance) with fp32 and with int8: mean absolute pixel difference of the final images (in 8-bit levels) and
   the mean IoU of the final masks' foreground.

Both must hold for ``--precision int8`` to run ("accepted at the output level"). ``auto`` further needs the
data-level verdict (label agreement and KID of an int8 dataset indistinguishable from fp32's:
``benchmarks/int8_judge.py`` records it) and a measured speed-up on this machine (``fastsynth bench --choose``).

The thresholds were set after seeing two reference points on the bundled model, measured by this gate
(``benchmarks/int8_gate_references.py``): bf16 eager, the lower precision the project allows on GPUs (0.017
relative RMS, 1.33 levels, IoU 0.985), and int8 of every convolution but the first and last (0.30, 15.5 levels,
IoU 0.961). They screen; the data-level judge decides.

In the layer of ``runtime`` and ``pipeline`` (tests/test_layout.py): it runs generate's batch function
(``sampling.pairs.sample_pairs``) and the runtime's runners; ``runtime`` imports it lazily for ``--precision int8``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import FastsynthError

GATE = {"max_output_rel_rms": 0.10, "max_mean_abs_pixel": 5.0, "min_mean_mask_iou": 0.95}
# calibration: the model's own sampler inputs for these many rows per generation mode, from this seed
CALIBRATION = {"seed": 8191, "rows_per_mode": 8, "modes": ["pairs", "from-masks", "inpaint"]}
# the gate's inputs: other seeds than the calibration's
GATE_INPUTS = {"seed": 4099, "rows": 32, "timesteps": 10}
RUNTIMES = ("onnx", "openvino")


def _default_generation(net, meta, mode: str = "pairs"):
    """(cfg, scheduler, conditioning-free settings) of ``generate``'s defaults for ``net``."""
    from ..conditioning import dilate_px_for
    from ..config import GenerateConfig
    from ..data.modality import modality_from_config
    from ..sampling import opening_size
    from ..sampling.pairs import generation_settings

    cfg, sch = generation_settings(GenerateConfig(mode=mode), meta, net.config)
    c = net.config
    res = c.resolution
    return cfg, sch, {"res": res, "dilate_px": dilate_px_for(res, cfg.inpaint_dilate_px_at_256),
                      "opening": opening_size(res, cfg.opening_px_at_256), "modality": modality_from_config(c)}


def model_space_for(fn, net, meta):
    """A latent model's space whose decoder runs where ``fn`` runs (its backend and precision: a gate measures the
    whole output, denoiser and decoder); None for a pixel model."""
    if not net.config.autoencoder:
        return None
    from ..models.latent import model_space

    space = model_space(net.config, model_dir=(meta or {}).get("path"))
    if getattr(fn, "backend", None):
        from .decoder import make_decoder_fn

        space.decode_fn = make_decoder_fn(space.ae.decoder, space.ae.sha256, space.grid, fn.backend, "cpu",
                                          getattr(fn, "precision", "fp32"))
    return space


def _run_pairs(fn, net, meta, seed: int, n: int, mode: str = "pairs", source=None):
    """``generate``'s rows 0..n-1 of ``seed`` in ``mode`` through ``fn``: (images, masks) as generate writes them.
    ``source``: (images, masks) the conditioning is made from (from-masks, inpaint)."""
    from ..sampling.pairs import Conditioning, conditioning_from_arrays, row_seed, sample_pairs

    cfg, sch, s = _default_generation(net, meta, mode)
    m = s["modality"]
    space = model_space_for(fn, net, meta)
    if mode == "pairs":
        cond = Conditioning("pairs", [], None, "", m, space=space)
    else:
        images, masks = source
        stems = [f"row{i}" for i in range(len(masks))]
        if mode == "from-masks":
            cond = conditioning_from_arrays("from-masks", stems, masks, m, space=space)
        else:
            img = images.transpose(0, 3, 1, 2) if images.ndim == 4 else images[:, None]
            raw = np.concatenate([img.astype(np.int32), masks[:, None].astype(np.int32)], 1)
            cond = conditioning_from_arrays("inpaint", stems, raw.astype(images.dtype), m, space=space)
    idx = np.arange(n)
    seeds = np.array([row_seed(seed, i) for i in idx], dtype=np.int64)
    images, masks, _ = sample_pairs(fn, sch, cfg, cond, idx, seeds, s["res"], s["dilate_px"], s["opening"],
                                    torch.device("cpu"))
    return images, masks


def calibration_inputs(fn, net, meta, spec: dict = CALIBRATION) -> list[tuple]:
    """The denoiser's inputs (x_t, t, cond) while ``fn`` generates ``rows_per_mode`` rows in each mode with the
    default sampler: x_t at the sampler's own timesteps along its own trajectories, the unconditional and the
    guided halves of the redraw pass, mask-conditioned and inpainting inputs (made from the generated pairs)."""
    seen: list[tuple] = []

    def recording(x, t, c):
        seen.append((x.detach().float().cpu().clone(), t.detach().cpu().clone(), c.detach().float().cpu().clone()))
        return fn(x, t, c)

    n = spec["rows_per_mode"]
    images, masks = _run_pairs(recording, net, meta, spec["seed"], n, "pairs")
    for mode in spec["modes"]:
        if mode != "pairs":
            _run_pairs(recording, net, meta, spec["seed"] + 1, n, mode, (images, masks))
    return seen


def _check_inputs(net, meta, images, masks, spec: dict = GATE_INPUTS):
    """The fixed output check set: the given pairs (the fp32 sampler's), noised to ``timesteps`` timesteps over
    0..T-1 with fixed noise, each row under one of three conditionings (none, its mask, inpainting)."""
    from ..conditioning import cond_from_masks, cond_inpaint, inpaint_region
    from ..data.codec import labels_to_channels, pairs_to_x0

    _, sch, s = _default_generation(net, meta)
    m = s["modality"]
    img = images.transpose(0, 3, 1, 2) if images.ndim == 4 else images[:, None]
    x0 = pairs_to_x0(np.concatenate([img.astype(np.int32), masks[:, None].astype(np.int32)], 1), m)
    n = x0.shape[0]
    label = labels_to_channels(masks, m)
    region = inpaint_region(label, s["dilate_px"])
    space = model_space_for(None, net, meta)
    if space is not None:  # a latent model's inputs: the pairs encoded into its grid
        label = space.labels_to_grid(label)
        x0 = torch.cat([space.encode_images(x0[:, :m.channels]), label], 1)
        region = space.region_to_grid(region)
    k_mask, i_mask = cond_from_masks(label, channels=x0.shape[1])
    k_inp, i_inp = cond_inpaint(x0, region)
    which = (torch.arange(n) % 3).view(-1, 1, 1, 1)
    known = torch.where(which == 1, k_mask, torch.where(which == 2, k_inp, torch.zeros_like(x0)))
    ind = torch.where(which == 1, i_mask, torch.where(which == 2, i_inp, torch.zeros_like(x0)))
    cond = torch.cat([known * ind, ind], 1)
    T = net.config.num_train_timesteps
    ac = torch.as_tensor(sch.alphas_cumprod).float()
    g = torch.Generator().manual_seed(spec["seed"])
    out = []
    for t in np.linspace(0, T - 1, spec["timesteps"]).round().astype(int):
        eps = torch.randn(x0.shape, generator=g)
        out.append((ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * eps, torch.full((n,), int(t)), cond))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1) > 0, b.reshape(len(b), -1) > 0
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def gate_figures(ref_fn, test_fn, net, meta, spec: dict = GATE_INPUTS) -> dict:
    """The gate's measurements of ``test_fn`` against ``ref_fn`` (see the module's docstring)."""
    from ..data.codec import images_to_tensor

    t0 = time.perf_counter()
    cfg, _, s = _default_generation(net, meta)
    m = s["modality"]
    ia, ma = _run_pairs(ref_fn, net, meta, spec["seed"], spec["rows"])
    ib, mb = _run_pairs(test_fn, net, meta, spec["seed"], spec["rows"])

    def as_float(im):
        return images_to_tensor(im.transpose(0, 3, 1, 2) if im.ndim == 4 else im[:, None], m)

    pix = (as_float(ia) - as_float(ib)).abs() * 127.5  # in 8-bit levels for every bit depth
    iou = _iou(ma, mb)
    err2, ref2, by_t = 0.0, 0.0, {}
    for x, t, c in _check_inputs(net, meta, ia, ma, spec):
        a, b = ref_fn(x, t, c).double(), test_fn(x, t, c).double()
        e, r = float(((a - b) ** 2).sum()), float((a ** 2).sum())
        err2, ref2 = err2 + e, ref2 + r
        by_t[int(t[0])] = round((e / r) ** 0.5, 5)
    return {
        "output": {"rel_rms": (err2 / ref2) ** 0.5, "rel_rms_by_timestep": by_t, "rows_per_timestep": spec["rows"],
                   "conditionings": ["none", "mask", "inpaint"]},
        "sampler": {"mode": cfg.mode, "sampler": cfg.sampler, "steps": cfg.steps, "redraw": cfg.redraw,
                    "guidance": cfg.guidance, "rows": spec["rows"], "seed": spec["seed"],
                    "mean_abs_pixel": float(pix.mean()), "p99_abs_pixel": float(pix.flatten().quantile(0.99)),
                    "mean_mask_iou": float(iou.mean()), "min_mask_iou": float(iou.min()),
                    "mask_area_fp32": float((ma > 0).mean()), "mask_area_test": float((mb > 0).mean())},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def verdict(figures: dict, gate: dict | None = None) -> dict:
    """Which of the gate's conditions hold (``gate``: thresholds, default ``GATE``), and whether all do."""
    gate = GATE if gate is None else gate
    checks = {
        "output_rel_rms": figures["output"]["rel_rms"] <= gate["max_output_rel_rms"],
        "mean_abs_pixel": figures["sampler"]["mean_abs_pixel"] <= gate["max_mean_abs_pixel"],
        "mean_mask_iou": figures["sampler"]["mean_mask_iou"] >= gate["min_mean_mask_iou"],
    }
    return {"thresholds": dict(gate), "checks": checks, "ok": all(checks.values())}


def describe(gate_record: dict) -> str:
    f, v = gate_record["figures"], gate_record["verdict"]
    th = v["thresholds"]
    return (f"output relative RMS error {f['output']['rel_rms']:.4f} (max {th['max_output_rel_rms']}), "
            f"whole sampler: mean |pixel difference| {f['sampler']['mean_abs_pixel']:.2f} levels "
            f"(max {th['max_mean_abs_pixel']}), mean mask IoU {f['sampler']['mean_mask_iou']:.3f} "
            f"(min {th['min_mean_mask_iou']})")


def runtime_tag(runtime: str) -> str:
    """A runtime and its version: its int8 kernels decide the numbers, so the gate is per version."""
    from importlib.metadata import version

    if runtime == "onnx":
        return f"onnxruntime-{version('onnxruntime')}"
    if runtime == "openvino":
        from .openvino import openvino_version

        return f"openvino-{openvino_version()}"
    raise FastsynthError(f"int8 runs with --backend onnx or openvino, not {runtime!r}")


def int8_paths(model_sha: str, resolution: int, runtime: str | None = None) -> dict:
    from .int8 import int8_dir

    d = int8_dir(model_sha, resolution, CALIBRATION)
    p = {"dir": d, "model": d / "model.onnx", "info": d / "quantize.json"}
    if runtime is not None:
        tag = runtime_tag(runtime)
        p.update(gate=d / f"gate-{tag}.json", data=d / f"data-{tag}.json")
    return p


def bf16_paths(model_sha: str, resolution: int, runtime: str = "openvino") -> dict:
    """Where the bf16 gate of (model, runtime) lives: bf16 runs the fp32 ONNX file with the runtime's bf16
    inference precision, so there is no model file of its own."""
    from ..utils import cache_dir

    d = cache_dir() / "bf16" / f"{model_sha[:16]}-{resolution}"
    tag = runtime_tag(runtime)
    return {"dir": d, "gate": d / f"gate-{tag}.json", "data": d / f"data-{tag}.json"}


def gate_paths(model_sha: str, resolution: int, runtime: str, precision: str = "int8") -> dict:
    if precision == "int8":
        return int8_paths(model_sha, resolution, runtime)
    if precision == "bf16":
        return bf16_paths(model_sha, resolution, runtime)
    raise FastsynthError(f"no accuracy gate for precision {precision!r} (int8 or bf16)")


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def runner(path: Path, runtime: str, device: torch.device):
    if runtime == "onnx":
        from .onnx import onnx_model_fn

        return onnx_model_fn(path, device, "fp32")
    from .openvino import openvino_model_fn

    return openvino_model_fn(path, device)


def ensure_int8(net, meta: dict | None, model_sha: str, runtime: str, log=None) -> tuple[Path, dict]:
    """The quantised file of ``net`` and its gate record for ``runtime`` (``onnx`` or ``openvino``), built and
    measured on first use (about a minute or two for the bundled model on 1 thread; cached). The record says
    whether the gate accepts it; this function never refuses (``runtime.make_model_fn`` does)."""
    from .int8 import quantize_denoiser
    from .onnx import cached_onnx, onnx_model_fn

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    dev = torch.device("cpu")
    res = net.config.resolution
    paths = int8_paths(model_sha, res, runtime)
    fp32_path = cached_onnx(net, model_sha)
    ref_fn = None
    if not paths["model"].exists():
        log(f"int8: calibrating on the model's own sampler inputs and quantising (once per model; cached in "
            f"{paths['dir']})")
        t0 = time.perf_counter()
        ref_fn = onnx_model_fn(fp32_path, dev, "fp32")
        calib = calibration_inputs(ref_fn, net, meta)
        info = quantize_denoiser(fp32_path, paths["model"], calib)
        info.update(calibration=CALIBRATION, seconds=round(time.perf_counter() - t0, 1), model_sha256=model_sha,
                    fp32_onnx=fp32_path.name)
        _write_json(paths["info"], info)
    record = _read_json(paths["gate"])
    if record is None or record.get("gate_inputs") != GATE_INPUTS:
        log(f"int8: accuracy gate for {runtime_tag(runtime)} (fixed inputs + the whole default sampler vs fp32)")
        ref_fn = ref_fn or onnx_model_fn(fp32_path, dev, "fp32")
        figures = gate_figures(ref_fn, runner(paths["model"], runtime, dev), net, meta)
        record = {"model_sha256": model_sha, "runtime": runtime_tag(runtime), "reference": "onnx fp32",
                  "gate_inputs": GATE_INPUTS, "figures": figures}
        _write_json(paths["gate"], record)
    return paths["model"], _with_verdicts(record, _read_json(paths["data"]))


def ensure_bf16(net, meta: dict | None, model_sha: str, runtime: str = "openvino", log=None) -> dict:
    """The gate record of ``runtime``'s bf16 inference precision for ``net`` against ONNX Runtime fp32 (the same
    figures and thresholds as int8's), measured on first use (a minute or two for the bundled model; cached), or
    the one shipped in the model's folder for this runtime version. It never refuses: ``--precision bf16`` is the
    user's choice; ``auto`` picks bf16 only when it is accepted."""
    from .onnx import cached_onnx, onnx_model_fn
    from .openvino import openvino_model_fn

    if runtime != "openvino":
        raise FastsynthError(f"the bf16 gate measures the openvino backend, not {runtime!r}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    dev = torch.device("cpu")
    paths = bf16_paths(model_sha, net.config.resolution, runtime)
    record = _read_json(paths["gate"])
    if record is None or record.get("gate_inputs") != GATE_INPUTS:
        shipped, data = _shipped((meta or {}).get("path"), model_sha, runtime, "bf16")
        if shipped is not None:
            return {**_with_verdicts(shipped, data), "shipped": True}
        log(f"bf16: accuracy gate for {runtime_tag(runtime)} bf16 (fixed inputs + the whole default sampler vs "
            f"fp32; once per model, cached in {paths['dir']})")
        fp32_path = cached_onnx(net, model_sha)
        figures = gate_figures(onnx_model_fn(fp32_path, dev, "fp32"),
                               openvino_model_fn(fp32_path, dev, precision="bf16"), net, meta)
        record = {"model_sha256": model_sha, "runtime": runtime_tag(runtime), "precision": "bf16",
                  "reference": "onnx fp32", "gate_inputs": GATE_INPUTS, "figures": figures}
        paths["dir"].mkdir(parents=True, exist_ok=True)
        _write_json(paths["gate"], record)
    return _with_verdicts(record, _read_json(paths["data"]))


def _with_verdicts(record: dict, data: dict | None) -> dict:
    v = verdict(record["figures"])
    return {**record, "verdict": v, "data_level": data, "accepted_output_level": v["ok"],
            "accepted": bool(v["ok"] and (data or {}).get("ok"))}


def shipped_gate_path(model_dir, runtime: str, precision: str = "bf16") -> Path:
    """Where a model folder carries the bf16 gate records measured for it (``ship_gate``): a fresh machine with the
    same runtime version can use them instead of measuring (the data level takes many CPU minutes)."""
    return Path(model_dir) / "gates" / f"{precision}-{runtime_tag(runtime)}.json"


def _shipped(model_dir, model_sha: str, runtime: str, precision: str) -> tuple[dict | None, dict | None]:
    if model_dir is None or precision != "bf16":
        return None, None
    blob = _read_json(shipped_gate_path(model_dir, runtime, precision)) or {}
    gate = blob.get("gate")
    if not gate or gate.get("model_sha256") != model_sha or gate.get("gate_inputs") != GATE_INPUTS:
        return None, None  # another model's (or an older gate's) record is never trusted
    return gate, blob.get("data")


def ship_gate(model_dir, model_sha: str, runtime: str = "openvino", precision: str = "bf16") -> Path:
    """Copy this machine's bf16 gate records (output and data level) of the model into its folder."""
    paths = gate_paths(model_sha, _resolution_of(model_dir), runtime, precision)
    gate, data = _read_json(paths["gate"]), _read_json(paths["data"])
    if gate is None or data is None:
        raise FastsynthError(f"no complete {precision} gate for this model on {runtime_tag(runtime)} to ship: run "
                             f"benchmarks/precision_judge.py --precision {precision} --record first")
    from ..utils import public_json

    out = shipped_gate_path(model_dir, runtime, precision)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_json(out, public_json({"gate": gate, "data": data}))  # a shipped file: no local paths in its commands
    return out


def _resolution_of(model_dir) -> int:
    return int(json.loads((Path(model_dir) / "config.json").read_text())["resolution"])


def gate_status(model_sha: str, resolution: int, runtime: str, precision: str = "int8",
                model_dir=None) -> dict | None:
    """The stored gate record of (model, runtime, precision) with its verdicts, or None when not measured yet
    (cheap: no quantisation, no sampling). bf16: this machine's cache, else the records shipped in ``model_dir``."""
    try:
        paths = gate_paths(model_sha, resolution, runtime, precision)
    except Exception as exc:  # the runtime's package is missing, or its version cannot be read: say so
        print(f"warning: no {precision} gate lookup on {runtime} ({type(exc).__name__}: {exc}); running fp32",
              file=sys.stderr)
        return None
    # int8's record counts only next to its quantised file; bf16 has no file of its own
    record = _read_json(paths["gate"]) if "model" not in paths or paths["model"].exists() else None
    if record is None or record.get("gate_inputs") != GATE_INPUTS:
        record, data = _shipped(model_dir, model_sha, runtime, precision)  # (None, None) for int8
        return None if record is None else {**_with_verdicts(record, data), "shipped": True}
    return _with_verdicts(record, _read_json(paths["data"]))


# two-sided 97.5% quantiles of Student's t for 1..10 degrees of freedom (no scipy at import time)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def data_level_verdict(fp32: list[dict], reduced: dict, name: str = "int8") -> dict:
    """Are the label agreement and the KID of a reduced-precision dataset (``reduced``: its ``evaluate`` metrics,
    generation seed 0) indistinguishable from fp32's? ``fp32``: the metrics of K >= 3 fp32 datasets with seeds
    0..K-1 (same settings). A figure passes when the reduced one lies inside the 95% prediction interval of a new
    draw from the fp32 seeds: |x - mean| <= t(0.975, K-1) * sd * sqrt(1 + 1/K), with sd the fp32 seed-to-seed
    standard deviation. (The earlier rule, |x - fp32 seed 0| <= |fp32 seed 1 - fp32 seed 0|, rejects a precision
    that changes nothing half of the time: of three equally distributed draws, the third is farther from the
    first than the second is in half the cases.)"""
    if len(fp32) < 3:
        raise FastsynthError(f"the data-level verdict needs at least 3 fp32 seeds, got {len(fp32)}")
    out: dict = {"checks": {}, "rule": "95% prediction interval of the fp32 seeds", "fp32_seeds": len(fp32)}
    figures = {"agreement": lambda m: m["agreement"]["dice"], "kid": lambda m: m["fid_kid"]["kid"]}
    for key, get in figures.items():
        try:
            xs, x = np.array([get(m) for m in fp32], dtype=float), float(get(reduced))
        except (KeyError, TypeError):
            continue
        k = len(xs)
        sd = float(xs.std(ddof=1))
        tol = _T975[min(k - 1, len(_T975)) - 1] * sd * float(np.sqrt(1 + 1 / k))
        out[key] = {"fp32": [float(v) for v in xs], "fp32_mean": float(xs.mean()), "fp32_sd": sd, name: x,
                    "difference": x - float(xs.mean()), "tolerance": tol}
        if key == "kid":
            out[key]["fid"] = {"fp32": [m["fid_kid"]["fid"] for m in fp32], name: reduced["fid_kid"]["fid"]}
        out["checks"][key] = abs(x - float(xs.mean())) <= tol
    out["ok"] = set(out["checks"]) == set(figures) and all(out["checks"].values())
    return out


def record_data_level(model_sha: str, resolution: int, runtime: str, result: dict, precision: str = "int8") -> Path:
    """Store the data-level verdict (``result["ok"]`` and its figures) next to the gate's record."""
    paths = gate_paths(model_sha, resolution, runtime, precision)
    if precision == "int8" and not paths["model"].exists():
        raise FastsynthError("no quantised model to record a data-level verdict for: run with --precision int8 first")
    if precision == "bf16" and not paths["gate"].exists():
        raise FastsynthError("no bf16 gate to record a data-level verdict for: run with --precision bf16 first")
    _write_json(paths["data"], result)
    return paths["data"]
