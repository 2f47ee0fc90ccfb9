"""train(): the joint image+mask DDPM objective, with EMA, checkpoints that resume exactly, and accelerate.

All randomness of step k (batch indices, flips, conditioning mode, regions, noise, timesteps) comes from one
generator seeded by (seed, k, process index), so a resumed run repeats the uninterrupted one without saving
any RNG state (as EDM does with per-sample seeds).

Run dir layout:
  config.json        the resolved TrainConfig
  split.json         the train/test split by stem (evaluation never trains on test images)
  log.jsonl          one line per log step (step, loss, it/s, lr)
  checkpoint/        the latest training state: model/ema safetensors, optimizer.pt, state.json
  model/             the EMA model, ready for ``fastsynth generate --model RUN_DIR``
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..conditioning import cond_from_masks, cond_inpaint, dilate_px_for, inpaint_region, random_boxes
from ..config import LOSS_WEIGHTINGS, LR_SCHEDULES, TrainConfig, model_config_for, to_dict, from_dict
from ..data import load_pairs, make_split, scan_pairs
from ..data.provenance import data_name, data_provenance
from ..data.codec import pairs_to_x0
from ..data.modality import modality_from_dict, with_window
from ..errors import DataError, FastsynthError
from ..utils import public_model_name, public_text, read_json, resolve_mixed_precision, write_json_atomic
from .checkpoint import latest_checkpoint, load_blob, save_checkpoint
from ..models import Denoiser, save_model
from ..models.card import model_card as _model_card
from ..models.denoiser import WEIGHTS_NAME


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    ss = np.random.SeedSequence([seed, step, rank])
    return torch.Generator().manual_seed(int(ss.generate_state(1, np.uint64)[0] & ((1 << 63) - 1)))


def small_area_weights(areas: np.ndarray, factor: float) -> torch.Tensor | None:
    """Sampling weight per training pair: ``factor`` for the pairs whose foreground area lies in the smallest quarter
    of the non-empty masks' areas, 1 for the rest (empty masks too); None when ``factor`` is 1 (uniform draws)."""
    if factor == 1.0:
        return None
    areas = np.asarray(areas, dtype=np.float64)
    w = np.ones(len(areas))
    nonempty = areas[areas > 0]
    if len(nonempty):
        w[(areas > 0) & (areas <= np.quantile(nonempty, 0.25))] = factor
    return torch.from_numpy(w)


def foreground_areas(arr: np.ndarray, modality, chunk: int = 256) -> np.ndarray:
    """Foreground fraction of each loaded pair [N, C + 1, H, W]: any class but background, as the codec reads labels
    (in chunks, so the float label channels of a large training split are never all in memory at once)."""
    from ..data.codec import foreground_channel, labels_to_channels

    lab = arr[:, modality.channels]
    return np.concatenate([(foreground_channel(labels_to_channels(lab[i:i + chunk].astype(np.uint8), modality)) > 0)
                           .flatten(1).float().mean(1).numpy() for i in range(0, len(lab), chunk)])


def _draw_indices(n: int, batch_size: int, g: torch.Generator, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return torch.randint(0, n, (batch_size,), generator=g)
    return torch.multinomial(weights, batch_size, replacement=True, generator=g)


def make_batch(data_u8, cfg: TrainConfig, g: torch.Generator, batch_size: int, dilate_px: int,
               modality=None, space=None, weights: torch.Tensor | None = None):
    """One training batch: (x0, known, indicator) with the conditioning mode drawn per example.

    ``data_u8``: loaded pairs [N, C + 1, H, W]; ``modality`` (None: 8-bit RGB + binary mask) says how to encode them.
    A latent model (``space`` a LatentSpace) draws from ``data_u8`` = its :class:`LatentData` instead: an image and
    one of its cached flips; the inpainting regions are drawn at full resolution and cover the latent cells they
    touch. ``weights``: a sampling weight per pair (``small_area_weights``; None: uniform draws)."""
    if space is not None and space.latent:
        idx = _draw_indices(data_u8.n, batch_size, g, weights)
        var = torch.randint(0, data_u8.v, (batch_size,), generator=g)
        x0, labels_full = data_u8.batch(idx, var)
        return _draw_conditioning(x0, x0.shape[1] - space.grid_channels, labels_full, cfg, g, dilate_px,
                                  space.region_to_grid)
    idx = _draw_indices(data_u8.shape[0], batch_size, g, weights)
    u8 = data_u8[idx]
    if modality is None:
        x0 = torch.cat([u8[:, :3].float().div(127.5).sub(1.0), torch.where(u8[:, 3:] >= 128, 1.0, -1.0)], dim=1)
    else:
        x0 = pairs_to_x0(u8, modality)
    c = 3 if modality is None else modality.channels  # image channels; the label channels follow
    if cfg.hflip:
        flip = torch.rand(batch_size, generator=g) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    if cfg.vflip:
        flip = torch.rand(batch_size, generator=g) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-2), x0)
    return _draw_conditioning(x0, c, x0[:, c:], cfg, g, dilate_px, None)


def _draw_conditioning(x0, c: int, labels_full, cfg: TrainConfig, g: torch.Generator, dilate_px: int, to_grid):
    """(x0, known, indicator): each example's conditioning mode drawn by the mode probabilities. ``c``: the channels
    before the label channels of x0; ``labels_full``: the label channels at full resolution (the inpainting regions
    come from them); ``to_grid``: a full-resolution region -> x0's grid (None: x0 is at full resolution)."""
    batch_size = x0.shape[0]
    res = labels_full.shape[-1]
    u = torch.rand(batch_size, generator=g)
    total = cfg.p_pairs + cfg.p_from_masks + cfg.p_inpaint
    is_fm = (u >= cfg.p_pairs / total) & (u < (cfg.p_pairs + cfg.p_from_masks) / total)
    is_ip = u >= (cfg.p_pairs + cfg.p_from_masks) / total
    known = torch.zeros_like(x0)
    indicator = torch.zeros_like(x0)
    if is_fm.any():
        k, ind = cond_from_masks(x0[is_fm, c:], channels=x0.shape[1])
        known[is_fm], indicator[is_fm] = k, ind
    if is_ip.any():
        xs = x0[is_ip]
        region = inpaint_region(labels_full[is_ip], dilate_px)
        # a third of the regions are random boxes, and empty masks always get one
        use_box = (torch.rand(xs.shape[0], generator=g) < 1 / 3) | (region.flatten(1).amax(1) == 0)
        if use_box.any():
            region[use_box] = random_boxes(int(use_box.sum()), res, g)
        k, ind = cond_inpaint(xs, region if to_grid is None else to_grid(region))
        known[is_ip], indicator[is_ip] = k, ind
    return x0, known, indicator


def lr_factor(k: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimiser step ``k``: linear warm-up, then constant or a cosine down to 0 at
    ``cfg.steps``."""
    warm = max(1, cfg.warmup_steps)
    if k < warm:
        return (k + 1) / warm
    if cfg.lr_schedule == "cosine":
        frac = min(1.0, (k - warm) / max(1, cfg.steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0


def weighted_loss(pred: torch.Tensor, target: torch.Tensor, a: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Mean squared error on the model output, weighted per example by ``cfg.loss_weighting``."""
    per_example = (pred - target).square().flatten(1).mean(1)
    if cfg.loss_weighting == "min-snr":
        snr = (a / (1 - a)).flatten()
        per_example = per_example * snr.clamp(max=cfg.min_snr_gamma) / (snr + 1)
    return per_example.mean()


def _warm_start(model: Denoiser, source: str) -> dict:
    """Load the weights of a saved model (same architecture) into ``model``; returns its provenance."""
    from ..models import load_model

    init, meta = load_model(None if source == "bundled" else source)
    differs = [f for f in _NETWORK_FIELDS if getattr(init.config, f) != getattr(model.config, f)]
    if differs:
        raise FastsynthError(f"--init-from {source}: its network differs from this run's (" + ", ".join(
            f"{f} {getattr(init.config, f)} there, {getattr(model.config, f)} here" for f in differs) + ")")
    model.unet.load_state_dict(init.unet.state_dict())
    t = meta.get("training", {})
    info = {"from": public_model_name(source), "steps_done": t.get("steps_done"),
            "wall_time_s": t.get("wall_time_s"), "earlier": t.get("init")}
    if t.get("data"):  # by folder name only (never a local path): the card says what the start had seen
        info["data"] = Path(str(t["data"])).name
    return info


# what builds the network: a warm start needs these equal; the data's description (grey or RGB into the same latent
# grid, the latent statistics, the bit depth) may differ, so a polyp model can start an ultrasound one
_NETWORK_FIELDS = ("resolution", "data_channels", "patch_size", "block_out_channels", "down_block_types",
                   "up_block_types", "layers_per_block", "attention_head_dim", "norm_num_groups", "num_class_embeds",
                   "num_train_timesteps", "beta_schedule", "prediction_type", "autoencoder", "autoencoder_sha256",
                   "latent_channels", "mask_repr")


INIT_RECORD = "init.json"


def _init_record(model: Denoiser, source: str, out: Path, src_ck: Path | None, is_main: bool = True) -> dict:
    """The warm start's provenance, fixed when the run begins: written to ``out/init.json`` then, and read back
    from there on ``--resume`` (the checkpoint holds the weights). Re-reading ``--init-from`` on a resume would
    record whatever that name points to now: ``bundled`` may by then be this very run's own earlier export."""
    path = out / INIT_RECORD
    if src_ck is not None and path.exists():
        return read_json(path, "the run's warm-start record")
    info = _warm_start(model, source)
    if src_ck is not None and is_main:  # a run from before init.json existed: the name is re-read now
        print(f"warning: {path} is missing; the warm start is recorded from what --init-from {source} is now",
              file=sys.stderr)
    if is_main:
        write_json_atomic(path, info)
    return info


class EMA:
    """Exponential moving average of parameters with the usual warm-up: decay_k = min(d, (1+k)/(10+k))."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach().float(), 1 - d)
            else:
                self.shadow[k].copy_(v)


def _save_checkpoint(ck: Path, unet_state: dict, ema: EMA, opt, sched, scaler, step: int, elapsed: float) -> None:
    """The whole training state, swapped in atomically (see training/checkpoint.py)."""
    blob = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    if scaler is not None:
        blob["scaler"] = scaler.state_dict()
    save_checkpoint(ck, {"model": unet_state, "ema": ema.shadow}, blob, {"step": step, "elapsed_s": elapsed})


def train(cfg: TrainConfig, resume: bool = False, time_limit_min: float | None = None,
          command: str = "", progress: bool = True) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    ck = out / "checkpoint"
    if out.exists() and (out / "config.json").exists():
        saved = read_json(out / "config.json", "run config")
        if not resume:
            raise FastsynthError(f"{out} already holds a training run; add --resume to continue it, "
                                 "or choose another --out")
        old = from_dict(TrainConfig, saved, where=str(out / "config.json"))
        keep = ("steps", "checkpoint_every", "log_every")
        diff = {k: (getattr(old, k), getattr(cfg, k)) for k in to_dict(cfg)
                if k not in keep and getattr(old, k) != getattr(cfg, k)}
        if diff:
            raise FastsynthError(f"--resume with different settings than {out / 'config.json'}: {diff}")
        if old.lr_schedule == "cosine" and old.steps != cfg.steps:  # the schedule's end would move: the rate jumps
            raise FastsynthError(f"--resume with --steps {cfg.steps}: {out} runs a cosine schedule down to 0 at step "
                                 f"{old.steps}; resume with --steps {old.steps}, or start a new run with --init-from "
                                 f"{out} for a further cool-down")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise FastsynthError(f"--lr-schedule {cfg.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
    model_cfg = model_config_for(cfg.preset, cfg.resolution, cfg.latent)
    if cfg.latent:
        from ..models.latent import MASK_REPRS

        if cfg.mask_repr not in MASK_REPRS:
            raise FastsynthError(f"--mask-repr {cfg.mask_repr!r}: choose one of {', '.join(MASK_REPRS)}")
    for name, ok, rule in (("--steps", cfg.steps >= 1, ">= 1"), ("--batch-size", cfg.batch_size >= 1, ">= 1"),
                           ("--lr", cfg.lr > 0, "> 0"), ("--checkpoint-every", cfg.checkpoint_every >= 1, ">= 1"),
                           ("--test-fraction", 0 <= cfg.test_fraction < 1, "in [0, 1)"),
                           ("--ema-decay", 0 <= cfg.ema_decay < 1, "in [0, 1)"),
                           ("--oversample-small", 0 < cfg.oversample_small <= 100, "in (0, 100]")):
        if not ok:
            raise FastsynthError(f"{name} {getattr(cfg, name[2:].replace('-', '_'))}: must be {rule}")

    mp = resolve_mixed_precision(cfg.mixed_precision, "cuda" if torch.cuda.is_available() else "cpu")
    accelerator = Accelerator(mixed_precision=mp)
    set_seed(cfg.seed)
    is_main = accelerator.is_main_process

    # data: scan, split by stem, decode the train split once into memory (uint8); volumes become 2D slices first
    from ..data.volumes import find_volumes, model_pixel_spacing, slice_volumes

    data_dir, volumes, group_by, data_cfg = cfg.data, None, cfg.group_by, cfg
    found = find_volumes(cfg.data)
    if found is not None:
        data_dir, volumes = slice_volumes(cfg.data, cfg.slice_axis, cfg.empty_fraction, cfg.split_seed, found=found,
                                          progress=lambda it: tqdm(it, desc="slicing volumes (once; cached)",
                                                                   unit="volume", disable=not (progress and is_main)))
        if cfg.group_by == "auto":  # every slice of a volume on one side of the split
            group_by = volumes["group_by"]
        if not cfg.classes and len(volumes["class_names"]) > 2:  # the dataset's class names (Decathlon labels)
            data_cfg = replace(cfg, classes=tuple(volumes["class_names"]))
    src = scan_pairs(data_dir, skip_bad=cfg.skip_bad)
    if resume and (out / "split.json").exists():  # the saved split, even if files were added since
        split = read_json(out / "split.json", "split file")
    else:
        split = make_split(src.stems, cfg.test_fraction, cfg.split_seed, group_by=group_by)
    bar = (lambda it: tqdm(it, desc="loading data", unit="pair", disable=not (progress and is_main)))
    modality = _detect_modality(src, data_cfg, is_main)
    stems, arr = load_pairs(src, cfg.resolution, split["train"], skip_bad=cfg.skip_bad, progress=bar,
                            modality=modality)
    held = [t for t in split["test"] if t in src.items]
    if held:  # the held-out pairs are checked now too (evaluation reads them later), not only the train split
        bad_before = len(src.skipped)
        try:
            kept_test, _ = load_pairs(src, cfg.resolution, held, skip_bad=cfg.skip_bad, modality=modality)
        except DataError as exc:
            if not cfg.skip_bad:
                raise
            kept_test = []  # every held-out pair is bad (listed in skipped.json)
        if len(src.skipped) > bad_before:
            split = {**split, "test": [t for t in split["test"] if t in set(kept_test) or t not in src.items]}
    modality = with_window(modality, arr[:, :modality.channels])  # 16-bit: the training split's window
    weights = small_area_weights(foreground_areas(arr, modality), cfg.oversample_small)
    model_cfg = replace(model_cfg, **modality.model_fields())
    space, latent_record = None, None
    if cfg.latent:  # encode the training split once (cached), then train on the latents
        model_cfg, space, data_u8, latent_record = _latent_data(model_cfg, cfg, arr, modality, progress and is_main,
                                                                out)
    else:
        data_u8 = torch.from_numpy(arr.astype(np.int32) if arr.dtype == np.uint16 else arr)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", to_dict(cfg))
        write_json_atomic(out / "split.json", split)
        if src.skipped:
            write_json_atomic(out / "skipped.json", [{"item": a, "reason": b} for a, b in src.skipped])
            print(f"skipped {len(src.skipped)} bad item(s); listed in {out / 'skipped.json'}")

    if cfg.loss_weighting not in LOSS_WEIGHTINGS:
        raise FastsynthError(f"--loss-weighting {cfg.loss_weighting!r}: choose one of {', '.join(LOSS_WEIGHTINGS)}")
    if cfg.min_snr_gamma <= 0:
        raise FastsynthError(f"--min-snr-gamma {cfg.min_snr_gamma}: must be > 0")
    model = Denoiser(model_cfg)
    src_ck = latest_checkpoint(ck) if resume else None
    init_info = _init_record(model, cfg.init_from, out, src_ck, is_main) if cfg.init_from else None
    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(num_train_timesteps=model_cfg.num_train_timesteps,
                                beta_schedule=model_cfg.beta_schedule, prediction_type=model_cfg.prediction_type)
    alphas_cumprod = noise_sched.alphas_cumprod.float()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, cfg))
    ema = EMA(model.unet, cfg.ema_decay, cfg.ema_warmup)

    step, elapsed_before, scaler_state = 0, 0.0, None
    if src_ck is not None:
        from safetensors.torch import load_file

        st = json.loads((src_ck / "state.json").read_text())
        step, elapsed_before = int(st["step"]), float(st.get("elapsed_s", 0.0))
        model.unet.load_state_dict(load_file(str(src_ck / "model.safetensors")))
        ema.shadow = load_file(str(src_ck / "ema.safetensors"))
        blob = load_blob(src_ck)
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        scaler_state = blob.get("scaler")
        if is_main:
            print(f"resuming {out} from step {step}")
    elif resume and is_main:
        print(f"no checkpoint in {ck}; starting from step 0")

    first_step = step
    model, opt = accelerator.prepare(model, opt)
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and scaler_state is not None:
        scaler.load_state_dict(scaler_state)
    device = accelerator.device
    ema.shadow = {k: v.to(device) for k, v in ema.shadow.items()}
    alphas_cumprod = alphas_cumprod.to(device)
    world, rank = accelerator.num_processes, accelerator.process_index
    per_proc = max(1, cfg.batch_size // world)
    dilate_px = dilate_px_for(cfg.resolution, 20)

    stop = {"flag": False}

    def _on_signal(signum, frame):  # finish the step, checkpoint, exit cleanly
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = time.perf_counter()
    deadline = t_start + time_limit_min * 60 if time_limit_min else None
    pbar = tqdm(total=cfg.steps, initial=step, desc="training", unit="it", disable=not (progress and is_main))
    log_f = open(out / "log.jsonl", "a") if is_main else None
    unwrapped = accelerator.unwrap_model(model)
    last_log_t, last_log_step, loss_acc, n_acc = time.perf_counter(), step, 0.0, 0

    def checkpoint():
        accelerator.wait_for_everyone()
        if not is_main:
            return
        elapsed = elapsed_before + time.perf_counter() - t_start
        state = {k: v.detach().cpu() for k, v in unwrapped.unet.state_dict().items()}
        _save_checkpoint(ck, state, ema, opt, sched, scaler, step, elapsed)
        export_model(elapsed)

    def export_model(elapsed):
        ema_net = Denoiser(model_cfg)
        ema_net.unet.load_state_dict({k: v.detach().cpu().to(torch.float32) for k, v in ema.shadow.items()})
        meta = {
            "fastsynth_version": __version__,
            "resolution": cfg.resolution,
            "modes": ["pairs", "from-masks", "inpaint"],
            "data": modality.to_dict(),
            **({"latent": latent_record} if latent_record else {}),
            "parameters": ema_net.num_parameters(),
            "training_data": data_provenance(cfg.data),
            "training": {  # a model folder is what people share: the data by name, the command without local paths
                "data": data_name(cfg.data), "n_train": len(stems), "n_test": len(split["test"]),
                "split_seed": cfg.split_seed, "test_fraction": cfg.test_fraction,
                "steps_done": step, "steps_planned": cfg.steps, "batch_size": cfg.batch_size,
                "preset": cfg.preset, "lr": cfg.lr, "ema_decay": cfg.ema_decay,
                "wall_time_s": round(elapsed, 1), "command": public_text(command),
                "hardware": _hardware(accelerator), "torch": torch.__version__, "mixed_precision": mp,
                "loss_weighting": cfg.loss_weighting, "min_snr_gamma": cfg.min_snr_gamma, "init": init_info,
                "lr_schedule": cfg.lr_schedule,
                **({"oversample_small": cfg.oversample_small} if cfg.oversample_small != 1.0 else {}),
                **({"volumes": {"slice_axis": cfg.slice_axis, "empty_fraction": cfg.empty_fraction,
                                "n_volumes": len(volumes["volumes"]), "source": volumes["source"],
                                "pixel_spacing": model_pixel_spacing(volumes, cfg.resolution)}} if volumes else {}),
            },
        }
        save_model(ema_net, out / "model", meta=meta, card=_model_card(meta))
        write_json_atomic(out / "model" / "split.json", split)
        if space is not None and space.codec is not None:
            from ..models.latent import MASK_CODEC_NAME

            shutil.copy(out / MASK_CODEC_NAME, out / "model" / MASK_CODEC_NAME)

    try:
        while step < cfg.steps and not stop["flag"]:
            g = _step_generator(cfg.seed, step, rank)
            # global RNGs (dropout) re-seeded per step too, so a resumed run repeats the uninterrupted one
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            x0, known, indicator = make_batch(data_u8, cfg, g, per_proc, dilate_px, modality, space, weights)
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, model_cfg.num_train_timesteps, (per_proc,), generator=g)
            x0, known, indicator, noise, t = (v.to(device) for v in (x0, known, indicator, noise, t))
            a = alphas_cumprod[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            cond = torch.cat([known * indicator, indicator], dim=1)
            with accelerator.autocast():
                pred = model(x_t, t, cond)
            if model_cfg.prediction_type == "v_prediction":
                target = a.sqrt() * noise - (1 - a).sqrt() * x0
            else:
                target = noise
            loss = weighted_loss(pred.float(), target, a, cfg)
            accelerator.backward(loss)
            if cfg.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            ema.update(unwrapped.unet, step)
            step += 1
            loss_acc += float(loss.detach())
            n_acc += 1
            pbar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                rate = (step - last_log_step) / max(1e-9, now - last_log_t)
                rec = {"step": step, "loss": loss_acc / max(1, n_acc), "it_per_s": rate, "lr": sched.get_last_lr()[0]}
                pbar.set_postfix(loss=f"{rec['loss']:.4f}", it_s=f"{rate:.2f}")
                if log_f:
                    log_f.write(json.dumps(rec) + "\n")
                    log_f.flush()
                last_log_t, last_log_step, loss_acc, n_acc = now, step, 0.0, 0
                if not math.isfinite(rec["loss"]):
                    raise FastsynthError(f"training diverged at step {step} (loss {rec['loss']}); lower --lr")
            if step % cfg.checkpoint_every == 0:
                checkpoint()
            timed_out = bool(deadline and time.perf_counter() > deadline)
            if world > 1:  # every process stops at the same step, or DDP would wait forever
                flag = torch.tensor([float(timed_out or stop["flag"])], device=device)
                flag = accelerator.reduce(flag, reduction="sum")
                timed_out, stop["flag"] = bool(flag.item() > 0), bool(flag.item() > 0)
            if timed_out:
                if is_main:
                    print(f"\ntime limit reached at step {step}")
                break
        checkpoint()
    finally:
        pbar.close()
        if log_f:
            log_f.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    if is_main:
        spent = time.perf_counter() - t_start
        print(f"trained to step {step} ({step - first_step} steps in {spent / 60:.1f} min, "
              f"{(step - first_step) / max(spent, 1e-9):.2f} it/s); model in {out / 'model'}; log {out / 'log.jsonl'}"
              + (f"; continue with the same command and --resume" if step < cfg.steps else ""))
    return out


def _latent_data(model_cfg, cfg: TrainConfig, arr: np.ndarray, modality, progress: bool, out: Path):
    """(model config with the latent fields, LatentSpace, LatentData, record) of a latent run: the training split
    encoded once into the latent cache (``latent_cache.py``), its per-channel statistics stored in the config; with
    the ``ae`` mask representation the mask autoencoder is trained first (kept in the run folder for --resume).
    ``record``: what the model's metadata says of it (the mask round trip on the training labels)."""
    from ..models.autoencoder import load_autoencoder
    from ..models.latent import MASK_CODEC_NAME, LatentSpace, latent_config, load_mask_codec
    from .latent_cache import LatentData, build_latent_cache
    from .mask_codec import round_trip_iou, train_mask_codec

    ae = load_autoencoder(cfg.latent, channels=modality.channels)
    cache = build_latent_cache(arr, modality, ae, cfg.hflip, cfg.vflip, progress=progress)
    record = {"autoencoder": cfg.latent, "autoencoder_sha256": ae.sha256, "mask_repr": cfg.mask_repr,
              "cache_key": cache["key"], "flip_variants": len(cache["variants"])}
    codec = None
    if cfg.mask_repr == "ae":
        from safetensors.torch import save_file

        path = out / MASK_CODEC_NAME
        if path.exists():
            codec = load_mask_codec(path, modality.label_channels)
        else:
            codec, record["mask_codec"] = train_mask_codec(cache["labels"], modality, steps=cfg.mask_codec_steps,
                                                           seed=cfg.seed, progress=progress)
            out.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(path))
            write_json_atomic(out / "mask_codec.json", record["mask_codec"])
        if (out / "mask_codec.json").exists():
            record["mask_codec"] = read_json(out / "mask_codec.json", "mask autoencoder record")
    model_cfg = latent_config(model_cfg, cfg.latent, ae.sha256, cfg.mask_repr, cache["mean"], cache["std"])
    cache = {**cache, "mean": torch.tensor(model_cfg.latent_mean), "std": torch.tensor(model_cfg.latent_std)}
    space = LatentSpace(model_cfg, autoencoder=ae, mask_codec=codec)
    iou = round_trip_iou(cache["labels"][:, 0], modality, space.labels_to_grid, space.grid_to_logits)
    record["mask_round_trip_iou_train"] = {"mean": round(float(iou.mean()), 4),
                                           "p5": round(float(iou.quantile(0.05)), 4), "min": round(float(iou.min()), 4)}
    return model_cfg, space, LatentData(cache, space, modality), record


def _detect_modality(src, cfg: TrainConfig, is_main: bool):
    """The data's Modality (checked across the whole folder), told to the user with any warning."""
    from ..data.modality import detect_modality, parse_classes

    modality, warnings = detect_modality(src, class_names=parse_classes(cfg.classes) if cfg.classes else None,
                                         skip_bad=cfg.skip_bad)
    if is_main:
        print(f"data: {modality.describe()}", file=sys.stderr)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    return modality


def _hardware(accelerator) -> str:
    if torch.cuda.is_available():
        return f"{accelerator.num_processes}x {torch.cuda.get_device_name(0)}"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
