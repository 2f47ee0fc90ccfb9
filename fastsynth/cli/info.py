"""fastsynth info: what a model is."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a model (resolution, modes, training data, size)")
    p.add_argument("--model", default=None, help="model folder or training run folder (default: bundled)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import GenerateConfig, apply_model_defaults, resolve_guidance
    from ..data.modality import modality_from_config
    from ..models import load_model, resolve_model_dir
    from ..models.denoiser import WEIGHTS_NAME
    from ..sampling import resolve_sampler
    from ..utils import public_json, public_text

    d = resolve_model_dir(args.model)
    net, meta = load_model(d)
    meta = public_json({k: v for k, v in meta.items() if k != "path"})  # older models hold local paths
    cfg = net.config
    t = meta.get("training", {})
    info = {
        "path": str(d), "resolution": cfg.resolution, "modes": meta.get("modes", ["pairs", "from-masks", "inpaint"]),
        "parameters": net.num_parameters(), "file_mb": round((d / WEIGHTS_NAME).stat().st_size / 2**20, 2),
        "data": modality_from_config(cfg).describe(),
        "patch_size": cfg.patch_size, "block_out_channels": list(cfg.block_out_channels),
        "beta_schedule": cfg.beta_schedule, "prediction_type": cfg.prediction_type,
        "training_data": t.get("data"), "n_train": t.get("n_train"), "steps_trained": t.get("steps_done"),
        "wall_time_s": t.get("wall_time_s"), "hardware": t.get("hardware"), "command": t.get("command"),
    }
    if cfg.autoencoder:
        info["space"] = (f"latent: {cfg.autoencoder} autoencoder (sha256 {cfg.autoencoder_sha256[:12]}...), "
                         f"{cfg.grid}x{cfg.grid} grid of {cfg.latent_channels} channels, mask as {cfg.mask_repr}")
    else:
        info["space"] = "pixels"
    init, total = t.get("init"), t.get("steps_done")
    if init and total is not None:  # warm starts: the steps of every earlier run too
        while init:
            total += init.get("steps_done") or 0
            init = init.get("earlier")
        info["steps_trained_total"] = total
        info["warm_started_from"] = t["init"].get("from")
    g = resolve_guidance(apply_model_defaults(GenerateConfig(), meta))
    sampler, steps, _ = resolve_sampler(g.sampler, g.steps, meta)
    info["default_sampler"] = f"{sampler} x{steps}"
    info["default_pairs"] = ("redrawn from the mask" if g.redraw else "one pass") + (
        f", mask fixed at sigma {g.condition_at:g}" if g.condition_at else "") + (
        f", guidance {g.guidance:g}" if g.guidance != 1.0 and (g.redraw or g.condition_at) else "")
    if meta.get("distillation"):
        dist = meta["distillation"]
        info["distilled"] = (f"{dist['rounds_done']} round(s) of progressive distillation, DDIM "
                             f"{dist['teacher_steps']} -> {dist['student_steps']} steps, {dist['steps_per_round']} "
                             f"steps/round; command: {dist.get('command')}")
    if meta.get("evaluation", {}).get("downstream"):
        e = meta["evaluation"]["downstream"]
        info["downstream_dice"] = ", ".join(
            f"{k} {v['dice']:.3f}" + (f" ± {v['dice_seed_std']:.3f}" if "dice_seed_std" in v else "")
            for k, v in e["heldout"].items())
        if e.get("agreement"):
            info["label_agreement"] = f"{e['agreement']['dice']:.3f} (real held-out {e['agreement'].get('real_heldout_dice', float('nan')):.3f})"
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:>18}: {v}")
    return 0
