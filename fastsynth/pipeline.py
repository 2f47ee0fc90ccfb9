"""generate(): seeds -> batches -> pairs -> shards. Knows nothing of the backends' internals.

Pair i depends only on (model, settings, seed, i): its noise and any stochastic sampler step come from a
generator seeded with ``row_seed(seed, i)``. Work is cut into fixed shards of ``shard_size`` rows; a shard is
written atomically by a background thread while the next one is sampled, so memory stays flat and a killed
run resumes where it stopped. Several processes (``accelerate launch`` / torchrun, or RANK and WORLD_SIZE in
the environment) take shards k with k % world == rank and write the same dataset a single process would.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import __version__
from .conditioning import dilate_px_for
from .config import DEFAULT_MIN_AGREEMENT, GenerateConfig, MODES, apply_model_defaults, network_batch_size, \
    optional_ref, resolve_cascade, resolve_guidance
from .data.modality import Modality, modality_from_config
from .dataset import DatasetWriter, Rows, render_card
from .dataset.card import carry_evaluation
from .dataset.writer import ROW_GROUP, check_compatible
from .errors import FastsynthError
from .metrics.leakage import model_split, split_fingerprint
from .utils import file_sha256, public_text, resolve_device
from .sampling import make_scheduler, opening_size, resolve_sampler
# one batch of generate's rows (below the pipeline, so the int8 gate runs exactly what generate runs); re-exported
from .sampling.cascade import cascade_pairs
from .sampling.pairs import REDRAW_SEED_XOR, Conditioning, _sample_rows, conditioning_from_arrays, row_seed, \
    sample_pairs, spare_seed  # noqa: F401

def load_conditioning(mode: str, resolution: int, masks: str | None, images: str | None,
                      modality: Modality | None = None, space=None) -> Conditioning:
    """The conditioning source of a mode. ``space``: a latent model's LatentSpace (the masks go into its grid, the
    inpainted images through its encoder, once); None: pixels."""
    from .data import load_pairs, scan_pairs
    from .data.pairs import load_label_folder

    modality = modality or Modality()

    if mode not in MODES:
        raise FastsynthError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "pairs":
        if masks or images:
            raise FastsynthError("--masks/--images are for --mode from-masks / inpaint, not pairs")
        return Conditioning("pairs", [], None, "", modality, space=space)
    if mode == "from-masks":
        if not masks:
            raise FastsynthError("--mode from-masks needs --masks DIR (a folder of binary mask images)")
        stems, arr = load_label_folder(masks, resolution, modality)
    else:
        if not images:
            raise FastsynthError("--mode inpaint needs --images DIR (a folder with images/ and masks/: each "
                                 "real mask, dilated, is the region where a new polyp is generated)")
        src = scan_pairs(images)
        stems, arr = load_pairs(src, resolution, modality=modality)
    fp = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16] + f"-{len(stems)}"
    return conditioning_from_arrays(mode, stems, arr, modality, fp, space)


# what a dataset records of its model's training: numbers, never local paths or the shell command
PUBLIC_TRAINING_KEYS = ("n_train", "n_test", "split_seed", "test_fraction", "steps_done", "steps_planned",
                        "batch_size", "preset", "lr", "ema_decay", "wall_time_s", "hardware", "torch",
                        "mixed_precision")


def public_model_info(model: str | None, meta: dict) -> dict:
    """The manifest's description of the generating model: its name (not its local path), training numbers and
    training-data provenance (name, licence, citation) from its metadata."""
    from .data.provenance import model_data_provenance
    from .models.denoiser import BUNDLED_MODELS

    name = "bundled" if model is None else (str(model) if str(model) in BUNDLED_MODELS
                                            else Path(str(model)).resolve().name)
    t = meta.get("training", {})
    return {"path": name, "training": {k: t[k] for k in PUBLIC_TRAINING_KEYS if k in t},
            "training_data": model_data_provenance(meta)}


def _warn_heldout_sources(cond_src: Conditioning, heldout: list | None, option: str) -> None:
    """Say when the conditioning folder holds stems the model held out (rows made from them leak test data)."""
    if not heldout or not cond_src.stems:
        return
    bad = sorted(set(cond_src.stems) & set(heldout))
    if bad:
        print(f"warning: {len(bad)} of the {len(cond_src.stems)} stems in {option} are held out by the model's "
              f"split.json (e.g. {', '.join(bad[:3])}): rows made from them leak test data into an evaluation on "
              "that split (`fastsynth evaluate` refuses them, or drops them with --drop-leaking); give a folder "
              "of training-split stems only", file=sys.stderr)


def _dist_info() -> tuple[int, int]:
    """(rank, world size) from the environment that accelerate launch / torchrun set."""
    try:
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))
        world = int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise FastsynthError("RANK / WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise FastsynthError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def generate(cfg: GenerateConfig, out: str | os.PathLike, model: str | None = None,
             masks: str | None = None, images: str | None = None, device: str = "auto",
             progress: bool = True, command: str | None = None, allow_mixed_precision: bool = False,
             latent_sink=None) -> dict:
    """Generate (or resume, or extend) the dataset in ``out``. Returns a summary dict. ``allow_mixed_precision``:
    resume a dataset started in another runtime precision (recorded per shard) instead of refusing.
    ``latent_sink(rows, z)``: new pairs of a latent model, unfiltered, only: called with each batch's row indices
    and latents (the autoencoder's own scale) before they are decoded (``fastsynth train-filter --distill``)."""
    from tqdm.auto import tqdm

    from .models import load_model, resolve_model_dir
    from .models.denoiser import WEIGHTS_NAME, read_model_meta
    from .runtime import make_model_fn, resolve_runtime

    if cfg.n < 1:
        raise FastsynthError(f"--n {cfg.n}: must be at least 1")
    if cfg.batch_size < 1 or cfg.shard_size < 1:
        raise FastsynthError("--batch-size and --shard-size must be at least 1")
    if cfg.seed < 0:
        raise FastsynthError(f"--seed {cfg.seed}: must be a non-negative integer")
    model_dir = resolve_model_dir(model)
    keep_given = cfg.keep_agreeing  # None: the model's own filter segmenter (a path inside its folder), if any
    # what the user left open: the model's own measured defaults for the mode, then the global ones
    cfg = resolve_guidance(resolve_cascade(apply_model_defaults(cfg, read_model_meta(model_dir))))
    if not cfg.guidance >= 0:
        raise FastsynthError(f"--guidance {cfg.guidance}: must be >= 0 (1 = no guidance)")
    if cfg.redraw and cfg.mode != "pairs":
        raise FastsynthError("--redraw is for --mode pairs (the other modes are already mask-conditioned)")
    if cfg.max_components < 0:
        raise FastsynthError(f"--max-components {cfg.max_components}: must be >= 0 (0 keeps every region)")
    if not cfg.condition_at >= 0:
        raise FastsynthError(f"--condition-at {cfg.condition_at}: must be a noise level >= 0 (0 = off)")
    if cfg.condition_at and cfg.mode != "pairs":
        raise FastsynthError("--condition-at is for --mode pairs (the other modes are conditioned from the start)")
    if cfg.condition_at and cfg.redraw:
        raise FastsynthError("--condition-at and --redraw are two ways to fit the image to its mask: choose one")
    if cfg.max_components and not (cfg.mode == "pairs" and (cfg.redraw or cfg.condition_at)):
        raise FastsynthError("--max-components is for --mode pairs with --redraw or --condition-at (otherwise a "
                             "dropped region would stay in the image, unlabelled)")
    if cfg.base:
        if cfg.mode != "pairs":
            raise FastsynthError(f"--base {cfg.base}: a cascade makes new pairs (--mode pairs); --mode {cfg.mode} is "
                                 "conditioned on what you give it")
        if cfg.redraw or cfg.condition_at or cfg.autoguide:
            raise FastsynthError(f"--base {cfg.base}: the cascade re-renders the base model's pairs conditioned on "
                                 "their masks; --redraw, --condition-at and --autoguide are for one model's own pairs "
                                 "(add --base none to use them)")
        if not 0.0 < cfg.strength <= 1.0:
            raise FastsynthError(f"--strength {cfg.strength:g}: must be in (0, 1] (the fraction of the sampler's steps "
                                 "that re-render the upsampled pair; 1 = from pure noise)")
    elif cfg.strength is not None:
        raise FastsynthError("--strength is for a cascade (--base MODEL)")
    if cfg.guidance != 1.0 and cfg.mode == "pairs" and not (cfg.redraw or cfg.condition_at or cfg.base):
        raise FastsynthError("--guidance needs a conditional pass: --mode from-masks / inpaint, --redraw, "
                             "--condition-at or --base")
    if cfg.guidance_interval:
        gi = cfg.guidance_interval
        if len(gi) != 2 or not (0 <= gi[0] < gi[1] < float("inf")):
            raise FastsynthError(f"--guidance-interval {','.join(str(v) for v in gi)}: need LO,HI with "
                                 "0 <= LO < HI, finite (noise levels sigma; e.g. 0.28,5.42)")
        if cfg.guidance == 1.0:
            raise FastsynthError("--guidance-interval needs guidance (--guidance other than 1)")
    from .config import FORMATS

    if cfg.format not in FORMATS:
        raise FastsynthError(f"--format {cfg.format!r}: choose one of {', '.join(FORMATS)}")
    if cfg.autoguide and cfg.mode != "pairs":
        raise FastsynthError("--autoguide guides the first pass of --mode pairs (the other modes have classifier-free "
                             "--guidance)")
    if cfg.autoguide and not cfg.autoguide_scale > 0:
        raise FastsynthError(f"--autoguide-scale {cfg.autoguide_scale}: must be > 0 (1 = no guidance)")
    keep_ref = _keep_ref(cfg.keep_agreeing, keep_given, model_dir)
    if keep_ref and cfg.mode != "pairs":
        raise FastsynthError("--keep-agreeing filters new pairs (--mode pairs); in --mode from-masks / inpaint the "
                             "mask is given (use `fastsynth filter` on such a dataset)")
    min_agreement = DEFAULT_MIN_AGREEMENT if cfg.min_agreement is None else float(cfg.min_agreement)
    if keep_ref and not 0.0 <= min_agreement <= 1.0:
        raise FastsynthError(f"--min-agreement {min_agreement:g}: must be between 0 and 1 (a Dice)")
    if not keep_ref and cfg.min_agreement is not None:
        raise FastsynthError("--min-agreement is the threshold of --keep-agreeing SEGMENTER")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FastsynthError(f"--out {out}: exists and is not a folder")
    dev = resolve_device(device)
    rank, world = _dist_info()
    net, meta = load_model(model_dir)
    res = net.config.resolution
    sampler, steps, grid = resolve_sampler(cfg.sampler, cfg.steps, meta)
    cfg = replace(cfg, sampler=sampler, steps=steps)
    if not 1 <= cfg.steps <= net.config.num_train_timesteps:
        raise FastsynthError(f"--steps {cfg.steps}: must be between 1 and {net.config.num_train_timesteps}")
    scheduler = make_scheduler(cfg.sampler, net.config.num_train_timesteps, net.config.beta_schedule,
                               net.config.prediction_type, grid=grid)
    try:
        scheduler.__class__.from_config(scheduler.config).set_timesteps(cfg.steps)
    except ValueError as exc:
        raise FastsynthError(f"--steps {cfg.steps} with --sampler {cfg.sampler}: {exc}") from None
    switch_step = None
    if cfg.condition_at and cfg.mode == "pairs":  # a level no step reaches would silently do nothing: refused
        from .sampling.pairs import condition_switch_step

        switch_step = condition_switch_step(scheduler, cfg.steps, cfg.condition_at, f"{cfg.sampler} x{cfg.steps}")
    modality = modality_from_config(net.config)
    scorer = None
    if keep_ref:
        if modality.channels != 3 or modality.class_names:
            raise FastsynthError(f"--keep-agreeing: scores RGB images with binary masks for now; this model makes "
                                 f"{modality.image_mode} images with classes {modality.class_names}")
        from .runtime.agreement import AgreementScorer

        from .runtime import SEGMENTER_BACKENDS

        # the segmenter runs on the denoiser's backend where segmenters have it (not OpenVINO: then auto)
        seg_backend = cfg.backend if cfg.backend in SEGMENTER_BACKENDS else "auto"
        scorer = AgreementScorer(keep_ref, dev, seg_backend, batch_size=cfg.batch_size)
        if scorer.latent:
            scorer.check_space(net.config)
            if cfg.base:
                raise FastsynthError(f"--keep-agreeing {keep_ref}: a latent filter scores the latents of new pairs "
                                     "before they are decoded, not a cascade's; give an image segmenter for --base")
    space = None
    if net.config.autoencoder:  # a latent model: diffusion on the autoencoder's grid, decoded at the end
        from .models.latent import model_space

        space = model_space(net.config, model_dir=model_dir)
    cond_src = load_conditioning(cfg.mode, res, masks, images, modality, space)
    heldout = model_split(model_dir)
    _warn_heldout_sources(cond_src, heldout, "--masks" if masks else "--images")
    dilate_px = dilate_px_for(res, cfg.inpaint_dilate_px_at_256)
    opening = opening_size(res, cfg.opening_px_at_256)
    weights_sha = file_sha256(model_dir / WEIGHTS_NAME)
    weak = _load_weak_model(cfg.autoguide, net, weights_sha) if cfg.autoguide else None
    base = _load_base_model(cfg, net, dev) if cfg.base else None
    if latent_sink is not None and (space is None or scorer is not None or base is not None or cfg.mode != "pairs"):
        raise ValueError("latent_sink: for unfiltered new pairs of a latent model")
    # what auto means here (CPU: the backend measured fastest on this machine; int8 / bf16 only behind their gates)
    backend, runtime_precision = resolve_runtime(cfg.backend, dev, cfg.precision, weights_sha, res,
                                                 model_dir=model_dir)

    spacing = ((meta.get("training") or {}).get("volumes") or {}).get("pixel_spacing")
    if cfg.format == "nifti":
        from .errors import require

        require("nibabel", "medical", "Writing NIfTI pairs (--format nifti)")  # before any sampling, not after
    writer = DatasetWriter(out, cfg.format, spacing=spacing or (1.0, 1.0))
    manifest = {
        "fastsynth_version": __version__,
        "n": cfg.n,
        "mode": cfg.mode, "sampler": cfg.sampler, "steps": cfg.steps, "seed": cfg.seed,
        "resolution": res, "shard_size": cfg.shard_size, "format": cfg.format,
        "mask_threshold": cfg.mask_threshold, "opening_px": opening, "dilate_px": dilate_px,
        "precision": cfg.precision, "backend": backend, "device": dev.type,
        "guidance": cfg.guidance, "redraw": cfg.redraw, "max_components": cfg.max_components,
        **({"condition_at": cfg.condition_at, "condition_at_step": switch_step} if cfg.condition_at else {}),
        **({"guidance_interval": list(cfg.guidance_interval)} if cfg.guidance_interval else {}),
        **({"autoguide": {"model_sha256": weak[2], "scale": cfg.autoguide_scale},
            "autoguide_model": public_model_info(cfg.autoguide, weak[1])} if weak else {}),
        "data": modality.to_dict(),
        **({"latent": {"autoencoder": net.config.autoencoder, "autoencoder_sha256": net.config.autoencoder_sha256,
                       "mask_repr": net.config.mask_repr, "grid": net.config.grid}} if space is not None else {}),
        **({"pixel_spacing_mm": spacing} if cfg.format == "nifti" else {}),
        **({"cascade": base.identity(cfg.strength), "base_model": public_model_info(cfg.base, base.meta),
            "base_runtime": f"{base.fn.backend}:{base.fn.precision}"} if base is not None else {}),
        **({"keep_agreeing": {"segmenter_sha256": scorer.sha256, "min_agreement": min_agreement,
                              "scored_at": scorer.resolution, **({"scored_on": "latent"} if scorer.latent else {})},
            "keep_agreeing_run": {"segmenter": "the model's own" if keep_given is None else Path(keep_ref).name,
                                  "backend": scorer.backend}} if scorer is not None else {}),
        "source_fingerprint": cond_src.fingerprint, "source_dir": Path(masks or images).name if masks or images else "",
        "model_sha256": weights_sha,
        "model": public_model_info(model, meta),
        "model_split": split_fingerprint(heldout) if heldout is not None else None,
        "command": public_text(command or ""),  # the dataset is what people share: no local paths in it
    }
    n_shards = (cfg.n + cfg.shard_size - 1) // cfg.shard_size
    spans = [(k * cfg.shard_size, min((k + 1) * cfg.shard_size, cfg.n)) for k in range(n_shards)]
    if rank > 0:  # rank 0 checks the folder and writes the manifest; the others wait for it
        existing = _wait_for_manifest(writer)
    else:
        existing = writer.read_manifest()
    if existing is not None:
        if not writer.any_shard():  # nothing generated yet: the earlier attempt failed before sampling
            existing = None
        else:
            check_compatible(existing, manifest, out)
            if existing["n"] > cfg.n:
                raise FastsynthError(f"{out} already holds {existing['n']} pairs; --n {cfg.n} would shrink it. "
                                     f"Use --n {existing['n']} or more, or another --out")
            for key in ("backend", "device"):
                if existing.get(key) not in (None, manifest[key]):
                    print(f"warning: {out} was started with {key} {existing[key]!r}, continuing with "
                          f"{manifest[key]!r}; rows may differ in the last bit from a single-{key} run",
                          file=sys.stderr)
    elif rank == 0 and out.exists() and any(out.iterdir()):
        raise FastsynthError(f"{out} exists and is not a fastsynth dataset folder; choose an empty or new --out")

    model_fn = make_model_fn(net, backend=backend, device=dev, precision=runtime_precision,
                             batch_size=network_batch_size(cfg), model_sha=manifest["model_sha256"], meta=meta)
    # what runs, not what was asked: "auto" resolved per machine, recorded, and never mixed into a dataset unasked
    manifest["runtime_precision"], manifest["backend"] = model_fn.precision, model_fn.backend
    shard_runtime = dict((existing or {}).get("shard_runtime") or {})
    if existing is not None:
        before = existing.get("runtime_precision", "fp32")
        if before != model_fn.precision:
            if not allow_mixed_precision:
                raise FastsynthError(f"{out} was started in {before} and would continue in {model_fn.precision} on "
                                     f"this machine ({model_fn.backend}): its rows would come from two precisions. "
                                     f"Resume with --precision {before}, or add --allow-mixed-precision (each "
                                     "shard's precision is then recorded in the manifest)")
            print(f"warning: {out} was started in {before}, continuing in {model_fn.precision} "
                  "(--allow-mixed-precision; each shard's precision is in the manifest's shard_runtime)",
                  file=sys.stderr)
            if not shard_runtime:  # the shards written so far: the precision the dataset was started with
                shard_runtime = {str(k): f"{existing.get('backend')}:{before}" for k in range(n_shards)
                                 if writer.shard_rows(k)}
        manifest["runtime_precision_started"] = existing.get("runtime_precision_started", before)
    if space is not None:  # the decoder runs where the denoiser runs (int8: the denoiser's alone; fp32 here)
        from .runtime.decoder import make_decoder_fn

        space.decode_fn = make_decoder_fn(space.ae.decoder, space.ae.sha256, space.grid, model_fn.backend, dev,
                                          model_fn.precision, batch_size=cfg.batch_size)
        manifest["latent"]["decoder"] = {"backend": space.decode_fn.backend, "precision": space.decode_fn.precision}
        if base is not None:  # the cascade encodes every upsampled image: the encoder runs where the decoder runs
            from .runtime.decoder import make_encoder_fn

            space.encode_fn = make_encoder_fn(space.ae.encoder, space.ae.sha256, modality.channels, res,
                                              model_fn.backend, dev, model_fn.precision,
                                              batch_size=cfg.batch_size)
            manifest["latent"]["encoder"] = {"backend": space.encode_fn.backend,
                                             "precision": space.encode_fn.precision}
    weak_fn = None
    if weak is not None:  # the weak model's own precision: reduced only where its own gate accepted it
        weak_dir, weak_meta, weak_sha, weak_net = weak
        wb, wp = resolve_runtime(cfg.backend, dev, cfg.precision, weak_sha, res, model_dir=weak_dir)
        weak_fn = make_model_fn(weak_net, backend=wb, device=dev, precision=wp, batch_size=cfg.batch_size,
                                model_sha=weak_sha, meta=weak_meta)
    if rank == 0 and world == 1:
        writer.clean_partials()
    todo = [k for k in range(n_shards) if k % world == rank and writer.shard_rows(k) != spans[k][1] - spans[k][0]]
    done_rows = sum(spans[k][1] - spans[k][0] for k in range(n_shards) if k % world == rank and k not in todo)
    if shard_runtime or manifest.get("runtime_precision_started", manifest["runtime_precision"]) \
            != manifest["runtime_precision"]:  # a mixed dataset: which shard came from which runtime
        shard_runtime.update({str(k): f"{model_fn.backend}:{model_fn.precision}" for k in todo})
        manifest["shard_runtime"] = dict(sorted(shard_runtime.items(), key=lambda kv: int(kv[0])))
    if rank == 0:  # the manifest is written before any shard (and after all validation), so a killed run finds it
        writer.write_manifest({**manifest, "complete": False})

    if scorer is not None:
        _keep_stats_path(out, 0).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made = drawn = 0
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastsynth-writer")
    pending: list[Future] = []
    bar = tqdm(total=sum(spans[k][1] - spans[k][0] for k in range(n_shards) if k % world == rank),
               initial=done_rows, unit="pair", desc=f"generating ({cfg.mode}, {cfg.sampler} x{cfg.steps})",
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    sink = None

    def flush(batches):  # one chunk (batches of (images, masks, index, seed, source, agreement)) to the writer thread
        images, masks_out, idx, seeds, sources, agree = zip(*batches)
        rows = Rows(np.concatenate(idx), np.concatenate(seeds), np.concatenate(images), np.concatenate(masks_out),
                    cfg.mode, [s for b in sources for s in b], np.concatenate(agree) if scorer is not None else None)
        while pending:
            pending.pop(0).result()
        pending.append(pool.submit(sink.add, rows))

    try:
        for k in todo:
            lo, hi = spans[k]
            span = hi - lo
            # a shard streams to disk in chunks of about ROW_GROUP rows (PNG encoding overlaps the next chunk's
            # sampling), so memory holds one chunk, not the shard: 1000 rows at 256² are 260 MB of pixels
            sink = writer.open_shard(k)
            chunk = []  # the kept batches not yet written, at most about ROW_GROUP rows
            filled = j = 0  # rows kept, candidates drawn (unfiltered: the same)
            last_kept = -1
            while filled < span:
                # candidate c of the shard: its own row's seed (c < span: an unfiltered run's row lo + c), then spares
                nb = cfg.batch_size if scorer is not None else min(cfg.batch_size, span - filled)
                cand = np.arange(j, j + nb)
                bi = lo + cand
                bs = np.array([row_seed(cfg.seed, lo + c) if c < span else spare_seed(cfg.seed, k, c - span)
                               for c in cand], dtype=np.int64)
                if base is not None:
                    im, mk, src = cascade_pairs(base, model_fn, scheduler, cfg, bi, bs, modality, space, res, opening,
                                                dev)
                else:
                    picked, select = [], None  # a latent filter chooses before the decoder runs (kept rows decode)
                    if scorer is not None and scorer.latent:
                        def select(z, m, need=span - filled):
                            a = scorer.score_latents(z, m)
                            picked[:] = [np.flatnonzero(a >= min_agreement)[:need], a]
                            return picked[0]
                    elif latent_sink is not None:
                        def select(z, m, rows=bi):
                            latent_sink(rows, z)
                            return np.arange(len(z))

                    im, mk, src = sample_pairs(model_fn, scheduler, cfg, cond_src, bi, bs, res, dilate_px, opening,
                                                dev, weak_fn=weak_fn, select=select)
                agree = None
                if scorer is not None:  # the pairs whose mask agrees, in candidate order, as many as the shard needs
                    if scorer.latent:  # chosen inside sample_pairs: im, mk and src are the kept rows already
                        keep, agree = picked
                    else:
                        agree = scorer(im, mk)
                        keep = np.flatnonzero(agree >= min_agreement)[:span - filled]
                        im, mk, src = im[keep], mk[keep], [src[i] for i in keep]
                    if len(keep):
                        last_kept = j + int(keep[-1])
                    bs, agree = bs[keep], agree[keep]
                j, drawn = j + nb, drawn + nb
                got = len(bs)
                chunk.append((im, mk, np.arange(lo + filled, lo + filled + got), bs, src, agree))
                filled, made = filled + got, made + got
                bar.update(got)
                if scorer is not None:
                    bar.set_postfix(kept=f"{filled}/{j}")
                    if j >= KEEP_MIN_CANDIDATES and filled < KEEP_MIN_RATE * j:
                        raise FastsynthError(
                            f"--keep-agreeing: only {filled} of {j} candidates of shard {k} agree at Dice >= "
                            f"{min_agreement:g} with the segmenter (below {KEEP_MIN_RATE:.0%}); lower --min-agreement "
                            "or use a segmenter that fits this model's data. Shards already finished are kept")
                buffered = sum(len(b[3]) for b in chunk)
                if buffered and (buffered >= ROW_GROUP or filled == span):
                    flush(chunk)
                    chunk = []
            pending.append(pool.submit(sink.close))  # the writer thread runs its tasks in order
            if scorer is not None:  # the shard's acceptance, for the card (written once the shard is in place)
                from .utils import write_json_atomic

                pending.append(pool.submit(write_json_atomic, _keep_stats_path(out, k),
                                           {"candidates": last_kept + 1, "kept": span}))
            sink = None
        while pending:
            pending.pop(0).result()
    finally:
        bar.close()
        for f in pending:  # an error while sampling: let the writer finish its chunk, then drop the shard
            try:
                f.result()
            except Exception:
                pass
        pool.shutdown(wait=True)
        if sink is not None:
            sink.abort()
    elapsed = time.perf_counter() - t0

    complete = all(writer.shard_rows(k) == spans[k][1] - spans[k][0] for k in range(n_shards))
    if complete:  # whichever process finishes last writes the final manifest and card (same content)
        final = {**manifest, "complete": True}
        if scorer is not None:
            final["keep_agreeing_run"] = {**manifest["keep_agreeing_run"], **_keep_stats(out, n_shards)}
        writer.write_manifest(final)
        if cfg.format == "nnunet":
            writer.write_nnunet_json(modality, cfg.n)
        card = render_card(final)
        if (out / "README.md").is_file():  # keep what `fastsynth evaluate --update-card` wrote into it
            card = carry_evaluation((out / "README.md").read_text(), card)
        writer.write_card(card)
    summary = {"pairs": made, "total": cfg.n, "seconds": round(elapsed, 2),
               "pairs_per_s": round(made / elapsed, 2) if elapsed > 0 and made else None,
               "out": str(out), "complete": complete, "device": str(dev), "backend": backend,
               **({"candidates": drawn} if scorer is not None else {})}
    return summary


KEEP_MIN_CANDIDATES = 256  # --keep-agreeing gives up on a shard after this many candidates ...
KEEP_MIN_RATE = 0.05  # ... when fewer than this fraction of them were kept


def _keep_ref(ref: str | None, given: str | None, model_dir: Path) -> str:
    """The segmenter folder of ``--keep-agreeing`` ("" = off): as given, or the model's own (a path relative to the
    model's folder) when the user left it open."""
    ref = optional_ref(ref)
    return str(model_dir / ref) if ref and given is None and not Path(ref).is_absolute() else ref


def _keep_stats_path(out: Path, k: int) -> Path:
    return Path(out) / ".keep-agreeing" / f"shard-{k:05d}.json"


def _keep_stats(out: Path, n_shards: int) -> dict:
    """Candidates drawn per kept pair over the shards whose count was recorded (a shard needs candidates up to its
    last kept one)."""
    from .utils import read_json

    stats = [read_json(p, "keep-agreeing stats") for k in range(n_shards) if (p := _keep_stats_path(out, k)).is_file()]
    cand, kept = sum(s["candidates"] for s in stats), sum(s["kept"] for s in stats)
    return {"candidates": cand, "kept": kept, "acceptance": round(kept / cand, 4) if cand else None,
            "shards_counted": len(stats)}


def _load_weak_model(ref: str, net, weights_sha: str):
    """The weak model of ``--autoguide``: (folder, metadata, weights sha256, network), checked to be a version of the
    same diffusion (resolution, channels, noise schedule, prediction) and not the model itself."""
    from .models import load_model, resolve_model_dir
    from .models.denoiser import WEIGHTS_NAME

    weak_dir = resolve_model_dir(ref)
    weak_net, weak_meta = load_model(weak_dir)
    a, b = net.config, weak_net.config
    for key in ("resolution", "data_channels", "image_channels", "image_bits", "intensity_window", "class_names",
                "num_train_timesteps", "beta_schedule", "prediction_type"):
        if getattr(a, key, None) != getattr(b, key, None):
            raise FastsynthError(f"--autoguide {ref}: its {key} is {getattr(b, key, None)!r}, the model's is "
                                 f"{getattr(a, key, None)!r}; the weak model must be a version of the same diffusion")
    weak_sha = file_sha256(weak_dir / WEIGHTS_NAME)
    if weak_sha == weights_sha:
        raise FastsynthError(f"--autoguide {ref}: is the model itself (same weights); give a weaker version, e.g. an "
                             "earlier checkpoint")
    return weak_dir, weak_meta, weak_sha, weak_net


@dataclass
class BaseModel:
    """The base model of a cascade (``--base``): its network function on its own runtime, its own generation settings
    (``generate_defaults`` of pairs, else the global ones) and what the dataset records of it."""

    meta: dict
    sha: str
    fn: object
    cfg: GenerateConfig
    scheduler: object
    resolution: int
    opening: int

    def identity(self, strength: float) -> dict:
        """What decides the rows (part of the dataset's identity: a resume with another base is refused)."""
        c = self.cfg
        return {"base_sha256": self.sha, "base_resolution": self.resolution, "strength": strength,
                "base_settings": {"sampler": c.sampler, "steps": c.steps, "redraw": c.redraw,
                                  "condition_at": c.condition_at, "guidance": c.guidance,
                                  "guidance_interval": list(c.guidance_interval), "opening_px": self.opening}}


def _load_base_model(cfg: GenerateConfig, net, dev) -> BaseModel:
    """The base model of ``--base``: a model of the same data (image channels and depth, classes) at a lower
    resolution, on the runtime ``--backend`` / ``--precision`` resolve to for it (its own accuracy gates)."""
    from .models import load_model, resolve_model_dir
    from .models.denoiser import WEIGHTS_NAME
    from .runtime import make_model_fn, resolve_runtime
    from .sampling.pairs import generation_settings

    base_dir = resolve_model_dir(cfg.base)
    base_net, base_meta = load_model(base_dir)
    a, b = net.config, base_net.config
    for key in ("image_channels", "image_bits", "intensity_window", "class_names"):
        if getattr(a, key, None) != getattr(b, key, None):
            raise FastsynthError(f"--base {cfg.base}: its {key} is {getattr(b, key, None)!r}, the model's is "
                                 f"{getattr(a, key, None)!r}; a cascade's base must model the same kind of data")
    if b.resolution >= a.resolution:
        raise FastsynthError(f"--base {cfg.base}: its resolution {b.resolution} is not below the model's "
                             f"{a.resolution}; the base of a cascade is a lower-resolution model")
    if b.autoencoder:
        raise FastsynthError(f"--base {cfg.base}: a latent model; the base of a cascade is a pixel model")
    base_cfg, base_sch = generation_settings(GenerateConfig(mode="pairs", seed=cfg.seed, batch_size=cfg.batch_size),
                                             base_meta, b)
    sha = file_sha256(base_dir / WEIGHTS_NAME)
    backend, precision = resolve_runtime(cfg.backend, dev, cfg.precision, sha, b.resolution, model_dir=base_dir)
    fn = make_model_fn(base_net, backend=backend, device=dev, precision=precision,
                       batch_size=network_batch_size(base_cfg), model_sha=sha, meta=base_meta)
    return BaseModel(base_meta, sha, fn, base_cfg, base_sch, b.resolution,
                     opening_size(b.resolution, cfg.opening_px_at_256))


def _wait_for_manifest(writer: DatasetWriter, timeout_s: float = 600.0) -> dict | None:
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        m = writer.read_manifest()
        if m is not None:
            return m
        time.sleep(0.5)
    raise FastsynthError(f"{writer.out}: process 0 wrote no manifest within {timeout_s:.0f} s; "
                         "is it running with the same --out?")


def default_out_dir(mode: str) -> Path:
    return Path(f"fastsynth-out/{mode}")


def distill_candidates(model: str | os.PathLike, n: int, work: str | os.PathLike, teacher: str | None = None,
                       seed: int = 0, batch_size: int = 16, progress: bool = True, backend: str = "auto") -> dict:
    """What ``fastsynth train-filter --distill N`` teaches a latent filter: ``n`` unfiltered new pairs of a latent
    ``model`` (its own generation defaults, its filter off; rows ``0..n-1`` of ``seed``) and the image filter
    ``teacher``'s masks of them (default: the model's shipped filter). Returns ``z`` [n, 32, h, w] (fp16, the
    autoencoder's scale: the latents as a latent filter is given them, caught before decoding), ``masks`` [n, H, W]
    {0, 255}, ``teach`` [n, r, r] (bool, the teacher's masks at its resolution ``resolution``) and ``record`` (what
    the filter's card says of its teacher). With a redraw the latent is the first pass's and the teacher sees the
    redrawn image: the filter learns whether the finished pair will agree.

    The candidates go to ``work`` (a generate dataset, plus each batch's latents in ``work/latents``), so an
    interrupted run goes on where generation stopped (a shard not finished is drawn again, the same rows)."""
    import torch
    from safetensors.torch import load_file, save

    from .metrics.io import load_synthetic
    from .models import load_model, resolve_model_dir
    from .runtime.agreement import AgreementScorer
    from .utils import public_model_name, write_atomic

    mdir = resolve_model_dir(model)
    net, meta = load_model(mdir)
    if not net.config.autoencoder:
        raise FastsynthError(f"{model}: a pixel model; the latent filter is for latent models")
    if teacher is None:  # the model's own filter, found as generate finds it
        teacher = _keep_ref(apply_model_defaults(GenerateConfig(), meta).keep_agreeing, None, mdir)
        if not teacher:
            raise FastsynthError(f"{model}: ships no filter to distil; give --teacher SEGMENTER (an image segmenter, "
                                 "e.g. one `evaluate --downstream --protocols real` saved)")
    if not (Path(teacher) / "config.json").is_file():
        raise FastsynthError(f"--teacher {teacher}: not a segmenter folder (no config.json)")
    scorer = AgreementScorer(teacher, "cpu")
    if scorer.latent:
        raise FastsynthError(f"--teacher {teacher}: a latent filter; the teacher is an image segmenter")
    if modality_from_config(net.config).channels != 3:
        raise FastsynthError(f"{model}: grey images; the image filters score RGB images for now")
    zdir = Path(work) / "latents"
    zdir.mkdir(parents=True, exist_ok=True)

    def sink(rows, z):
        rows = np.asarray(rows, dtype=np.int64)
        write_atomic(zdir / f"rows-{int(rows[0]):08d}.safetensors",
                     save({"rows": torch.from_numpy(rows), "z": z.detach().cpu().to(torch.float16).contiguous()}))

    cfg = GenerateConfig(n=n, keep_agreeing="none", seed=seed, batch_size=batch_size, backend=backend)
    generate(cfg, Path(work) / "pairs", model=str(mdir), progress=progress, latent_sink=sink)
    syn = load_synthetic(Path(work) / "pairs")
    caught: dict[int, torch.Tensor] = {}
    for f in sorted(zdir.glob("rows-*.safetensors")):
        d = load_file(str(f))
        caught.update(zip(d["rows"].tolist(), d["z"]))
    if any(int(i) not in caught for i in syn.index):
        raise FastsynthError(f"{work}: latents missing for some candidates; remove the folder and run again")
    z = torch.stack([caught[int(i)] for i in syn.index])
    teach = np.concatenate([scorer.predict_masks(syn.images[i:i + 256]) for i in range(0, len(z), 256)])
    own_teacher = Path(teacher).resolve().parent == mdir.resolve()
    record = {"teacher": f"{public_model_name(model)}'s own filter" if own_teacher else Path(teacher).name,
              "teacher_sha256": scorer.sha256, "candidates": int(n), "candidate_seed": int(seed)}
    return {"z": z, "masks": syn.masks, "teach": teach, "resolution": scorer.resolution, "record": record}
