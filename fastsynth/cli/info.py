"""fastsynth info: what a model is."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a model (resolution, modes, training data, size)")
    p.add_argument("--model", default=None, help="model folder or training run folder (default: bundled)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--list", action="store_true", help="list the models shipped with fastsynth, by name")
    p.set_defaults(func=run)


def list_bundled() -> list[dict]:
    """The shipped models: name, resolution, data, training data, the default of new pairs (from their metadata only,
    no weights loaded)."""
    from ..data.modality import modality_from_dict
    from ..models.denoiser import BUNDLED_MODELS, read_model_meta

    rows = []
    for name, d in BUNDLED_MODELS.items():
        if name == "default":
            continue
        meta = read_model_meta(d)
        pairs = (meta.get("generate_defaults") or {}).get("pairs") or {}
        rows.append({"name": name, "default": d == BUNDLED_MODELS["default"], "resolution": meta.get("resolution"),
                     "space": "latent" if meta.get("latent") else "pixels",
                     "data": (meta.get("training_data") or {}).get("name"),
                     "kind": modality_from_dict(meta.get("data")).describe(),
                     "distilled": bool(meta.get("distillation")),
                     "keeps_agreeing": bool(pairs.get("keep_agreeing"))})
    return rows


def run(args) -> int:
    from ..config import DEFAULT_MIN_AGREEMENT, GenerateConfig, apply_model_defaults, optional_ref, \
        resolve_cascade, resolve_guidance
    from ..data.modality import modality_from_config
    from ..models import load_model, resolve_model_dir
    from ..models.card import steps_trained_total
    from ..models.denoiser import WEIGHTS_NAME
    from ..sampling import resolve_sampler
    from ..utils import public_json

    if args.list:
        rows = list_bundled()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            res = f"{r['resolution']}x{r['resolution']}" if r["resolution"] else "?"
            what = f"{r['data']}, {r['kind']}"
            extra = "".join(text for flag, text in (
                (r["default"], "; the default"), (r["distilled"], "; a distilled few-step student"),
                (r["keeps_agreeing"], "; pairs kept where the mask agrees with its real-data segmenter")) if flag)
            print(f"{r['name']:>20}: {res} {r['space']}, {what}{extra}")
        return 0
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
    if t.get("init") and (total := steps_trained_total(t)) is not None:  # warm starts: earlier runs' steps too
        info["steps_trained_total"] = total
        info["warm_started_from"] = t["init"].get("from")
    from ..config import MODES

    for mode in MODES:  # what `fastsynth generate --mode MODE` runs with nothing else set
        g = resolve_guidance(resolve_cascade(apply_model_defaults(GenerateConfig(mode=mode), meta)))
        sampler, steps, grid = resolve_sampler(g.sampler, g.steps, meta)
        info[f"defaults_{mode}"] = _describe_defaults(g, sampler, steps, grid, mode)
        if mode == "pairs" and optional_ref(g.keep_agreeing):
            on_latent, distilled = _filter_kind(d / g.keep_agreeing)
            who = "a segmenter distilled from its real-data image filter" if distilled else "its real-data segmenter"
            info["defaults_pairs"] += (f"; kept where the mask agrees with {who} "
                                       f"`{g.keep_agreeing}` at Dice >= "
                                       f"{DEFAULT_MIN_AGREEMENT if g.min_agreement is None else g.min_agreement:g} "
                                       + ("(scored on the latent grid: more candidates drawn, only the kept ones "
                                          "decoded)" if on_latent else "(more candidates drawn)"))
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


def _describe_defaults(g, sampler: str, steps: int, grid, mode: str) -> str:
    """One line of a mode's effective generation settings and its network evaluations per pair (a guided step
    costs two)."""
    from ..sampling import make_scheduler
    from ..sampling.pairs import visited_levels

    from ..sampling.samplers import start_steps

    cascade = mode == "pairs" and bool(g.base)
    guided = g.guidance != 1.0 and (mode != "pairs" or g.redraw or g.condition_at or cascade)
    parts = [f"{sampler} x{steps}"]
    if cascade:  # the base model's own pairs, re-rendered: only the last steps run
        run = start_steps(steps, g.strength)
        parts = [f"a cascade: the pairs of {g.base} (its own defaults) upsampled and re-rendered at strength "
                 f"{g.strength:g}", f"{sampler} x{steps} of which the last {run} run",
                 f"{run * (2 if guided else 1)} network evaluations per pair here"]
        if guided:
            parts.insert(2, f"guidance {g.guidance:g}")
        return ", ".join(parts)
    if mode == "pairs":
        parts.append("redrawn from the mask" if g.redraw else "one pass")
        if g.condition_at:
            parts.append(f"mask fixed at sigma {g.condition_at:g}")
    if guided:
        lo_hi = f" at sigma in ({g.guidance_interval[0]:g}, {g.guidance_interval[1]:g}]" if g.guidance_interval else ""
        parts.append(f"guidance {g.guidance:g}{lo_hi}")
    n_guided_pass = steps
    try:
        levels = visited_levels(make_scheduler(sampler, grid=grid), steps)
        lo, hi = g.guidance_interval or (0.0, float("inf"))
        n_guided = sum(1 for v in levels if lo < v <= hi) if guided else 0
        if mode == "pairs" and g.condition_at:
            cond_levels = [v for v in levels if v <= g.condition_at]
            n_guided = sum(1 for v in cond_levels if lo < v <= hi) if guided else 0
            evals = steps + n_guided
        elif mode == "pairs" and g.redraw:
            evals = steps + n_guided_pass + n_guided
        else:
            evals = steps + n_guided
        parts.append(f"{evals} network evaluations per pair")
    except Exception:  # a sampler this line cannot lay out: the settings alone
        pass
    return ", ".join(parts)


def _filter_kind(segmenter_dir) -> tuple[bool, bool]:
    """Whether a model's filter segmenter scores latents (``fastsynth train-filter``) rather than decoded images,
    and whether it was distilled from an image filter (``train-filter --distill``)."""
    import json

    try:
        latent = json.loads((segmenter_dir / "config.json").read_text()).get("input") == "latent"
        return latent, json.loads((segmenter_dir / "fastsynth.json").read_text()).get("protocol") == "distilled"
    except (OSError, ValueError):
        return False, False
