"""distill(): progressive distillation of a denoiser into a few-step student (Salimans & Ho, ICLR 2022).

Round r turns a teacher sampled with deterministic DDIM in 2K steps into a student that does the same in K
steps. On the nested grids of :func:`grid_timesteps` a student step spans exactly two teacher steps: from
z_t (a noised real training example) the teacher takes DDIM steps t -> m -> s, and the student's x0 prediction
is regressed onto the x~ for which one DDIM step t -> s lands on the teacher's z_s:

    x~ = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t)

with the truncated-SNR weight max(alpha_t^2 / sigma_t^2, 1) (the paper's choice for v-prediction). The
student starts from the teacher and becomes the next round's teacher. Conditioning (pairs / from-masks /
inpainting) is drawn per example exactly as in training, so the student keeps all three modes.

Run dir layout:
  config.json            the resolved DistillConfig (plus teacher hash)
  round-1-8steps/ ...    the student after each round: a model folder whose fastsynth.json stores its grid,
                         so ``fastsynth generate --model DIR`` samples with it by default
  model/                 the final student (also a model folder)
  checkpoint/            student + teacher weights, optimizer, state.json (round, step): resumes exactly
  log.jsonl              step, round, loss, it/s
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..conditioning import dilate_px_for
from ..config import DistillConfig, TrainConfig, from_dict, to_dict
from ..data import load_pairs, scan_pairs
from ..data.provenance import data_name
from ..errors import FastsynthError
from ..models import load_model, resolve_model_dir, save_model
from ..models.denoiser import WEIGHTS_NAME
from ..sampling.samplers import ddim_step, grid_timesteps, to_x0_eps
from ..utils import file_sha256, public_model_name, public_text, resolve_mixed_precision, write_json_atomic
from .checkpoint import latest_checkpoint, load_blob, save_checkpoint
from .train import _step_generator, make_batch


def round_steps(teacher_steps: int, student_steps: int) -> list[int]:
    """Student steps of each round: teacher_steps/2, /4, ... down to student_steps."""
    if student_steps < 1 or teacher_steps <= student_steps:
        raise FastsynthError(f"--teacher-steps {teacher_steps} / --student-steps {student_steps}: need "
                             "teacher steps > student steps >= 1")
    rounds, k = [], teacher_steps
    while k > student_steps:
        if k % 2:
            raise FastsynthError(f"--teacher-steps {teacher_steps} must be --student-steps {student_steps} "
                                 "times a power of two (e.g. 16 and 4)")
        k //= 2
        rounds.append(k)
    if k != student_steps:
        raise FastsynthError(f"--teacher-steps {teacher_steps} must be --student-steps {student_steps} "
                             "times a power of two (e.g. 16 and 4)")
    return rounds


def round_grid(num_train_timesteps: int, student_steps: int) -> tuple[torch.Tensor, list[int]]:
    """(teacher grid of 2K points followed by -1 = clean, the student's K-point grid)."""
    fine = grid_timesteps(num_train_timesteps, 2 * student_steps)
    return torch.tensor(fine + [-1]), fine[::2]


def pd_target(z_t, z_s, a_t, a_s):
    """The x0 whose single DDIM step from z_t at a_t reaches z_s at a_s (a = alphas_cumprod)."""
    r = ((1 - a_s) / (1 - a_t)).sqrt()
    return (z_s - r * z_t) / (a_s.sqrt() - r * a_t.sqrt())


def distill_loss(student, teacher, x0, cond, eps, j, fine, ac_ext, prediction_type, autocast):
    """One batch of the progressive distillation objective; j = student step index (0 = noisiest)."""
    t, m, s = fine[2 * j], fine[2 * j + 1], fine[2 * j + 2]
    a_t, a_m, a_s = (ac_ext[v].view(-1, 1, 1, 1) for v in (t, m, s))  # index -1 -> 1.0 (clean)
    z_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    with torch.no_grad(), autocast():
        o1 = teacher(z_t, t, cond).float()
        z_m = ddim_step(*to_x0_eps(o1, z_t, a_t, prediction_type), a_m)
        o2 = teacher(z_m, m, cond).float()
        z_s = ddim_step(*to_x0_eps(o2, z_m, a_m, prediction_type), a_s)
        target = pd_target(z_t, z_s, a_t, a_s)
    with autocast():
        out = student(z_t, t, cond).float()
    x_hat, _ = to_x0_eps(out, z_t, a_t, prediction_type)
    w = (a_t / (1 - a_t)).clamp(min=1.0)
    return (w * (x_hat - target) ** 2).mean()


def _teacher_data(cfg: DistillConfig, meta: dict, model_dir: Path, resolution: int, modality=None):
    from ..data.provenance import DATA_PATH_ENV, find_training_data

    data = cfg.data
    if not data:
        recorded = meta.get("training", {}).get("data", "")
        if not recorded:
            raise FastsynthError("the teacher's metadata names no training data; give --data (the pairs it was "
                                 "trained on)")
        found, tried = find_training_data(recorded, model_dir)
        if found is None:
            raise FastsynthError(f"training data {recorded!r} (from the teacher's metadata) is not here (tried "
                                 f"{', '.join(map(str, tried))}); give --data, or set {DATA_PATH_ENV} to the "
                                 f"folder that holds {Path(recorded).name}/")
        data = str(found)
    elif not Path(data).exists():
        raise FastsynthError(f"--data {data}: no such folder")
    src = scan_pairs(data, skip_bad=cfg.skip_bad)
    stems = src.stems
    split_file = model_dir / "split.json"
    if split_file.exists():  # never distill on the teacher's held-out images
        held_out = set(json.loads(split_file.read_text()).get("test", []))
        stems = [s for s in stems if s not in held_out]
    if len(stems) < 2:
        raise FastsynthError(f"{data}: fewer than 2 training pairs left after removing the held-out split")
    return data, *load_pairs(src, resolution, stems, skip_bad=cfg.skip_bad, modality=modality)


def distill(cfg: DistillConfig, resume: bool = False, time_limit_min: float | None = None, command: str = "",
            progress: bool = True, device: str = "auto") -> Path:
    from tqdm.auto import tqdm

    from ..utils import resolve_device

    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise FastsynthError("fastsynth distill runs in one process (one GPU); launch it without accelerate")
    for name, ok, rule in (("--steps-per-round", cfg.steps_per_round >= 1, ">= 1"),
                           ("--batch-size", cfg.batch_size >= 1, ">= 1"), ("--lr", cfg.lr > 0, "> 0"),
                           ("--checkpoint-every", cfg.checkpoint_every >= 1, ">= 1")):
        if not ok:
            raise FastsynthError(f"{name} {getattr(cfg, name[2:].replace('-', '_'))}: must be {rule}")
    rounds = round_steps(cfg.teacher_steps, cfg.student_steps)
    out = Path(cfg.out)
    model_dir = resolve_model_dir(None if cfg.teacher in ("", "bundled") else cfg.teacher)
    teacher_sha = file_sha256(model_dir / WEIGHTS_NAME)
    saved_cfg = {**to_dict(cfg), "teacher_sha256": teacher_sha}
    if (out / "config.json").exists():
        if not resume:
            raise FastsynthError(f"{out} already holds a distillation run; add --resume to continue it, "
                                 "or choose another --out")
        old = json.loads((out / "config.json").read_text())
        keep = ("checkpoint_every", "log_every")
        diff = {k: (old.get(k), v) for k, v in saved_cfg.items() if k not in keep and old.get(k) != v}
        if diff:
            raise FastsynthError(f"--resume with different settings than {out / 'config.json'}: {diff}")
    elif out.exists() and any(out.iterdir()):
        raise FastsynthError(f"--out {out} exists and is not a distillation run; choose a new folder")

    dev = resolve_device(device)
    base, meta = load_model(model_dir)
    mcfg = base.config
    from ..data.modality import modality_from_config

    modality = modality_from_config(mcfg)  # the teacher's data: read and encoded as it was trained
    modality = None if modality.is_default else modality
    data, stems, arr = _teacher_data(cfg, meta, model_dir, mcfg.resolution, modality)
    data_u8 = torch.from_numpy(arr.astype(np.int32) if arr.dtype == np.uint16 else arr)
    tcfg = replace(TrainConfig(), **{k: v for k, v in meta.get("training", {}).items()
                                     if k in ("p_pairs", "p_from_masks", "p_inpaint", "hflip", "vflip")})
    dilate_px = dilate_px_for(mcfg.resolution, 20)
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(num_train_timesteps=mcfg.num_train_timesteps,
                       beta_schedule=mcfg.beta_schedule).alphas_cumprod.float()
    ac_ext = torch.cat([ac, torch.ones(1)]).to(dev)
    mp = resolve_mixed_precision(cfg.mixed_precision, dev.type)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    total = len(rounds) * cfg.steps_per_round
    step, elapsed_before = 0, 0.0
    ck = out / "checkpoint"
    src_ck = latest_checkpoint(ck) if resume else None
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", saved_cfg)

    teacher = base.to(dev)
    student = None
    opt = sched = scaler = None
    resumed_blob = None
    if src_ck is not None:
        from safetensors.torch import load_file

        st = json.loads((src_ck / "state.json").read_text())
        step, elapsed_before = int(st["step"]), float(st.get("elapsed_s", 0.0))
        teacher.unet.load_state_dict(load_file(str(src_ck / "teacher.safetensors")))
        student = copy.deepcopy(teacher)
        student.unet.load_state_dict(load_file(str(src_ck / "student.safetensors")))
        resumed_blob = load_blob(src_ck) or None  # empty between rounds: the next round starts afresh
        if resumed_blob is None:
            student = None
        print(f"resuming {out} at step {step} of {total} (round {step // cfg.steps_per_round + 1})")
    elif resume:
        print(f"no checkpoint in {ck}; starting from step 0")

    def new_round_state(stu):
        o = torch.optim.AdamW(stu.parameters(), lr=cfg.lr, weight_decay=0.0)
        s = torch.optim.lr_scheduler.LambdaLR(o, lambda k: min(1.0, (k + 1) / max(1, cfg.warmup_steps)))
        # fp16 gradients underflow without loss scaling; a disabled scaler (fp32 / bf16) passes everything through
        sc = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
        return o, s, sc

    stop = {"flag": False}

    def _on_signal(signum, frame):
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = time.perf_counter()
    deadline = t_start + time_limit_min * 60 if time_limit_min else None
    pbar = tqdm(total=total, initial=step, desc="distilling", unit="it", disable=not progress)
    log_f = open(out / "log.jsonl", "a")
    last_t, last_step, acc, n_acc = time.perf_counter(), step, 0.0, 0

    # a model folder is what people share: the teacher and the data by name, the command without local paths
    teacher_name, data_public, command_public = public_model_name(cfg.teacher), data_name(data), public_text(command)

    def student_meta(k_steps: int, grid: list, rnd: int, elapsed: float) -> dict:
        m = copy.deepcopy(meta)
        m.pop("path", None)
        m["fastsynth_version"] = __version__
        m["sampling"] = {"sampler": "distilled", "steps": k_steps, "grid": grid}
        m["distillation"] = {
            "method": "progressive distillation (Salimans & Ho 2022), DDIM teacher, truncated-SNR weight",
            "teacher": teacher_name, "teacher_sha256": teacher_sha, "data": data_public,
            "n_train": len(stems), "rounds_done": rnd, "teacher_steps": cfg.teacher_steps,
            "student_steps": k_steps, "steps_per_round": cfg.steps_per_round, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "seed": cfg.seed, "wall_time_s": round(elapsed, 1), "command": command_public,
            "device": str(dev), "torch": torch.__version__}
        return m

    def save_student(stu, k_steps, grid, rnd, elapsed, folder):
        m = student_meta(k_steps, grid, rnd, elapsed)
        card = (f"# fastsynth distilled student ({k_steps} steps)\n\nProgressively distilled from "
                f"`{teacher_name}` (sha256 {teacher_sha[:12]}) in {rnd} round(s) of {cfg.steps_per_round} steps "
                f"(DDIM {cfg.teacher_steps} -> {k_steps} steps) on `{data_public}` ({len(stems)} pairs).\n\n"
                f"Samples with `fastsynth generate --model {public_text(str(folder))}` (its grid: {grid}).\n\n"
                f"Command: `{command_public}`\n")
        save_model(stu, folder, meta=m, card=card)  # save_model copies the weights to the CPU
        if (model_dir / "split.json").exists():
            shutil.copy(model_dir / "split.json", Path(folder) / "split.json")

    grids = {k: round_grid(mcfg.num_train_timesteps, k) for k in rounds}  # per round: (teacher grid, student grid)
    grids = {k: (fine.to(dev), grid) for k, (fine, grid) in grids.items()}
    try:
        while step < total and not stop["flag"]:
            rnd = step // cfg.steps_per_round
            k_steps = rounds[rnd]
            fine, grid = grids[k_steps]
            if student is None:  # a new round: the student starts as a copy of its teacher
                student = copy.deepcopy(teacher)
            if opt is None:
                student.train().requires_grad_(True)
                teacher.eval().requires_grad_(False)
                opt, sched, scaler = new_round_state(student)
                if resumed_blob is not None:
                    opt.load_state_dict(resumed_blob["optimizer"])
                    sched.load_state_dict(resumed_blob["scheduler"])
                    if scaler.is_enabled() and resumed_blob.get("scaler"):
                        scaler.load_state_dict(resumed_blob["scaler"])
                    resumed_blob = None
            g = _step_generator(cfg.seed, step, 0)
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            x0, known, indicator = make_batch(data_u8, tcfg, g, cfg.batch_size, dilate_px, modality)
            eps = torch.randn(x0.shape, generator=g)
            j = torch.randint(0, k_steps, (cfg.batch_size,), generator=g)
            x0, known, indicator, eps, j = (v.to(dev) for v in (x0, known, indicator, eps, j))
            cond = torch.cat([known * indicator, indicator], dim=1)
            loss = distill_loss(student, teacher, x0, cond, eps, j, fine, ac_ext, mcfg.prediction_type, autocast)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            scaler.step(opt)  # skipped when fp16 gradients overflowed
            scaler.update()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            acc, n_acc = acc + float(loss.detach()), n_acc + 1
            pbar.update(1)
            if step % cfg.log_every == 0 or step % cfg.steps_per_round == 0:
                now = time.perf_counter()
                rate = (step - last_step) / max(1e-9, now - last_t)
                rec = {"step": step, "round": rnd + 1, "student_steps": k_steps, "loss": acc / n_acc,
                       "it_per_s": rate}
                pbar.set_postfix(round=f"{rnd + 1}/{len(rounds)}", loss=f"{rec['loss']:.4f}", it_s=f"{rate:.2f}")
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                last_t, last_step, acc, n_acc = now, step, 0.0, 0
                if not math.isfinite(rec["loss"]):
                    raise FastsynthError(f"distillation diverged at step {step} (loss {rec['loss']}); lower --lr")
            elapsed = elapsed_before + time.perf_counter() - t_start
            if step % cfg.steps_per_round == 0:  # round done: save the student, it becomes the teacher
                folder = out / f"round-{rnd + 1}-{k_steps}steps"
                save_student(student, k_steps, grid, rnd + 1, elapsed, folder)
                if step == total:
                    save_student(student, k_steps, grid, rnd + 1, elapsed, out / "model")
                teacher = student.eval().requires_grad_(False)
                student, opt, sched, scaler = None, None, None, None
                pbar.write(f"round {rnd + 1}/{len(rounds)} done: {k_steps}-step student in {folder}")
            if step % cfg.checkpoint_every == 0 or step % cfg.steps_per_round == 0:
                _checkpoint(ck, teacher, student, opt, sched, step, elapsed, scaler)
            if deadline and time.perf_counter() > deadline:
                pbar.write(f"time limit reached at step {step}")
                break
        elapsed = elapsed_before + time.perf_counter() - t_start
        _checkpoint(ck, teacher, student, opt, sched, step, elapsed, scaler)
    finally:
        pbar.close()
        log_f.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    if step >= total:
        print(f"distilled to {cfg.student_steps} steps; model in {out / 'model'}")
    else:
        print(f"stopped at step {step} of {total}; continue with the same command plus --resume")
    return out


def _checkpoint(ck: Path, teacher, student, opt, sched, step: int, elapsed: float, scaler=None) -> None:
    """Between rounds (student None) the saved student is the new teacher with a fresh optimizer (and fp16
    gradient scaler)."""
    stu = student if student is not None else teacher
    blob = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()} if opt is not None else {}
    if blob and scaler is not None and scaler.is_enabled():
        blob["scaler"] = scaler.state_dict()
    save_checkpoint(ck, {"teacher": teacher.unet.state_dict(), "student": stu.unet.state_dict()}, blob,
                    {"step": step, "elapsed_s": elapsed})
