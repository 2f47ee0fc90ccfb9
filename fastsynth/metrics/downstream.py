"""Downstream segmentation benchmark: does the synthetic data train a good segmenter?

Models come from segmentation_models_pytorch (UNet++ by default, as in Saragih et al. 2024; UNet, FPN and
DeepLabV3+ selectable; any smp encoder). ImageNet encoder weights are used when they can be loaded (``auto``),
otherwise the encoder is trained from scratch; the choice made is recorded with the scores.

Protocols (all train for the same number of optimiser steps, so they cost the same and differ only in data):
- ``real``: the real training images.
- ``synthetic``: synthetic pairs only (train on synthetic, test on real).
- ``real+synthetic``: each real image, per pass over the real set, is joined with probability ``alpha`` (0.5)
  by one of *its* synthetic samples (rows whose ``source`` is that real image, e.g. ``--mode from-masks``
  output), or by a uniformly drawn synthetic pair when the dataset has no such link (``--mode pairs``).
  So about alpha / (1 + alpha) of the examples seen are synthetic.
- ``low-data``: N real images (a seeded nested subset: the 16 are inside the 32, ...), N in (16, 32, 64, 128)
  by default, each once alone (``low-data-N``) and once with synthetic data as above (``low-data-N+synthetic``).

Scores: Dice and IoU per test image from tp/fp/fn of the prediction thresholded at 0.5 (sigmoid), averaged
over images (an image whose prediction and ground truth are both empty scores 1). Same seed -> same numbers
on CPU (one seeded generator for data order and augmentation; model init under a forked, seeded torch RNG).

A trained segmenter is saved like a generator: ``config.json`` + ``model.safetensors`` + ``fastsynth.json``
(protocol, data, scores) + ``README.md``; :func:`load_segmenter` reads it back in one call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FastsynthError
# the segmenter itself (config, smp model, save / load, inference) lives with the models, below the pipeline
from ..models.segmenter import (ARCHS, CONFIG_NAME, IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_NAME,  # noqa: F401
                                SegConfig, _cfg_dict, _to_input, binary_loss, build_model, dice_iou, load_segmenter,
                                num_classes,
                                predict, save_segmenter, seg_config_from_dict, unused_stages)

# synthetic-then-real: the synthetic-only segmenter (the "synthetic" run of the same seed) fine-tuned on the real
# images with the same recipe: twice the steps of "real", so judge it also against real at --seg-steps 2x
PROTOCOLS = ("real", "synthetic", "real+synthetic", "low-data", "synthetic-then-real")
DEFAULT_PROTOCOLS = ("real", "synthetic", "real+synthetic", "low-data")
LOW_DATA_N = (64,)  # the field's main use: a few real images, with and without synthetic ones
DEFAULT_SEEDS = 3
# pairs of runs compared in the summary: (candidate, baseline)
COMPARISONS = (("synthetic", "real"), ("real+synthetic", "real"), ("synthetic-then-real", "real"))


# --- data selection (pure, seeded) -------------------------------------------------------------------------
def low_data_subset(n_real: int, n: int, seed: int) -> np.ndarray:
    """Nested seeded subset: the first n of one fixed permutation of the real training indices."""
    if n > n_real:
        raise FastsynthError(f"low-data N={n} is larger than the {n_real} real training images")
    return np.sort(np.random.default_rng([seed, 1]).permutation(n_real)[:n])


def low_data_groups_subset(groups: list[str], n: int, seed: int) -> np.ndarray:
    """The real training indices of ``n`` whole groups (volumes, patients): the first n of one fixed seeded
    permutation of the sorted group names (nested like ``low_data_subset``)."""
    names = sorted(set(groups))
    if n > len(names):
        raise FastsynthError(f"low-data {n} groups: the real training images hold only {len(names)} groups")
    chosen = set(names[i] for i in np.random.default_rng([seed, 2]).permutation(len(names))[:n])
    return np.asarray([i for i, g in enumerate(groups) if g in chosen], np.int64)


def synthetic_links(real_stems: list[str], synth_sources: list[str]) -> list[np.ndarray]:
    """For each real image, the synthetic rows generated from it (by the ``source`` column)."""
    pos = {s: i for i, s in enumerate(real_stems)}
    links: list[list[int]] = [[] for _ in real_stems]
    for j, s in enumerate(synth_sources):
        if s and s in pos:
            links[pos[s]].append(j)
    return [np.asarray(v, np.int64) for v in links]


def example_stream(n_items: int, real_idx: np.ndarray | None, n_synth: int, alpha: float,
                   links: list[np.ndarray] | None, rng: np.random.Generator) -> np.ndarray:
    """``n_items`` training examples as rows (kind, index): kind 0 = real, 1 = synthetic.

    real only: shuffled passes over ``real_idx``; synthetic only: shuffled passes over the synthetic rows;
    both: per pass, each real image followed with probability ``alpha`` by one of its synthetic samples
    (``links``) or, without links, a uniformly drawn synthetic row.
    """
    out: list[tuple[int, int]] = []
    while len(out) < n_items:
        if real_idx is None:
            out += [(1, int(j)) for j in rng.permutation(n_synth)]
            continue
        for i in rng.permutation(real_idx):
            out.append((0, int(i)))
            if n_synth and rng.random() < alpha:
                own = links[i] if links is not None and len(links[i]) else None
                if own is not None:
                    out.append((1, int(own[rng.integers(len(own))])))
                elif links is None or not any(len(v) for v in links):
                    out.append((1, int(rng.integers(n_synth))))
                # linked dataset but this image has no samples: nothing is added for it
    return np.asarray(out[:n_items], np.int64)


def protocol_plan(protocols, low_data_n, n_real: int, has_synth: bool, seed: int, low_data_groups=(),
                  groups: list[str] | None = None) -> list[dict]:
    """Expand protocol names into runs: name, real indices (or None), whether synthetic data is used. With
    ``low_data_groups`` (and ``groups``, one name per real training image) the low-data protocol also runs on the
    images of N whole groups (``low-data-Ngroups``): a volume's or patient's images are never split."""
    runs = []
    for p in protocols:
        if p not in PROTOCOLS:
            raise FastsynthError(f"unknown protocol {p!r}; choose from {', '.join(PROTOCOLS)}")
        if p != "real" and not has_synth:
            raise FastsynthError(f"protocol {p!r} needs synthetic data")
        if p == "real":
            runs.append({"name": "real", "real": np.arange(n_real), "synthetic": False})
        elif p == "synthetic":
            runs.append({"name": "synthetic", "real": None, "synthetic": True})
        elif p == "real+synthetic":
            runs.append({"name": "real+synthetic", "real": np.arange(n_real), "synthetic": True})
        elif p == "synthetic-then-real":
            runs.append({"name": "synthetic-then-real", "real": np.arange(n_real), "synthetic": True,
                         "pretrain": True})
        else:
            for n in low_data_n:
                if n <= 0 or n > n_real:  # 0: no image-count runs (e.g. only --low-data-groups); too many: skipped
                    continue  # reported as skipped by the caller
                sub = low_data_subset(n_real, n, seed)
                runs.append({"name": f"low-data-{n}", "real": sub, "synthetic": False, "n": n})
                runs.append({"name": f"low-data-{n}+synthetic", "real": sub, "synthetic": True, "n": n})
            for n in low_data_groups:
                if groups is None:
                    raise FastsynthError("--low-data-groups needs the real data's groups (a run or model folder whose "
                                         "split.json names them, e.g. volumes)")
                sub = low_data_groups_subset(groups, n, seed)
                runs.append({"name": f"low-data-{n}groups", "real": sub, "synthetic": False, "n": len(sub)})
                runs.append({"name": f"low-data-{n}groups+synthetic", "real": sub, "synthetic": True, "n": len(sub)})
    return runs


# --- scores ------------------------------------------------------------------------------------------------
def score(model, test: np.ndarray, threshold: float = 0.5, device="cpu", class_names=None) -> dict:
    """Dice/IoU (per-image mean) of ``model`` (a module or a backend function) on a uint8 [N, 4, H, W] test set."""
    pred = predict(model, test[:, :3], threshold, device=device)
    if pred.dtype == np.uint8:  # a label map: per class
        return score_label_maps(pred, test[:, 3], class_names)
    dice, iou = dice_iou(pred, test[:, 3] >= 128)
    return {"dice": float(dice.mean()), "iou": float(iou.mean()), "dice_std": float(dice.std()),
            "iou_std": float(iou.std()), "n": int(len(test))}


def score_label_maps(pred: np.ndarray, target: np.ndarray, class_names=None) -> dict:
    """Per-class Dice/IoU (per-image mean, both empty -> 1, as for binary masks) of label maps [N, H, W] for each
    class >= 1, and their mean over the classes as ``dice`` / ``iou`` (the background is not scored)."""
    k_max = int(max(pred.max(initial=0), target.max(initial=0)))
    names = list(class_names) if class_names else ["background"] + [f"class{k}" for k in range(1, k_max + 1)]
    per_class, dices, ious = {}, [], []
    for k in range(1, len(names)):
        d, i = dice_iou(pred == k, target == k)
        per_class[str(names[k])] = {"dice": float(d.mean()), "iou": float(i.mean())}
        dices.append(d)
        ious.append(i)
    dice, iou = np.mean(dices, axis=0), np.mean(ious, axis=0)  # per image: the mean over classes
    return {"dice": float(dice.mean()), "iou": float(iou.mean()), "dice_std": float(dice.std()),
            "iou_std": float(iou.std()), "n": int(len(pred)), "per_class": per_class}


# --- training ----------------------------------------------------------------------------------------------
def _batch(stream_rows: np.ndarray, real: np.ndarray | None, synth: np.ndarray | None, cfg: SegConfig,
           rng: np.random.Generator):
    import torch

    arr = np.stack([real[i] if k == 0 else synth[i] for k, i in stream_rows])
    for b in range(len(arr)):  # augmentation from the same seeded generator
        if cfg.hflip and rng.random() < 0.5:
            arr[b] = arr[b, :, :, ::-1]
        if cfg.vflip and rng.random() < 0.5:
            arr[b] = arr[b, :, ::-1, :]
    x = _to_input(arr[:, :3])
    if num_classes(cfg) > 2:  # label map: class indices [B, H, W]
        return x, torch.from_numpy(arr[:, 3].astype(np.int64))
    y = torch.from_numpy((arr[:, 3:] >= 128).astype(np.float32))
    return x, y


def train_segmenter(cfg: SegConfig, real: np.ndarray | None, synth: np.ndarray | None = None,
                    real_idx: np.ndarray | None = None, links: list[np.ndarray] | None = None,
                    device: str = "cpu", progress: Callable | None = None, init_state: dict | None = None):
    """Train one segmenter on uint8 [N, 4, H, W] arrays; returns (model, info). ``init_state``: start from these
    weights (a fine-tune) instead of the recipe's initialisation."""
    import torch

    if real is None and synth is None:
        raise FastsynthError("nothing to train the segmenter on")
    use_real = real is not None and real_idx is not None
    n_avail = (len(real_idx) if use_real else 0) + (0 if synth is None else len(synth))
    if n_avail < 2:
        raise FastsynthError("the segmenter needs at least 2 training images")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model, weights_used = build_model(cfg)
    if init_state is not None:
        model.load_state_dict(init_state)
        weights_used = "fine-tuned"
    model = model.to(device).train()
    rng = np.random.default_rng([cfg.seed, 2])
    n_items = cfg.steps * cfg.batch_size
    stream = example_stream(n_items, real_idx if use_real else None, 0 if synth is None else len(synth),
                            cfg.alpha, links, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 2),
                                                pct_start=0.05)
    t0 = time.perf_counter()
    steps = range(cfg.steps)
    last = None
    for step in (progress(steps) if progress else steps):
        x, y = _batch(stream[step * cfg.batch_size:(step + 1) * cfg.batch_size], real, synth, cfg, rng)
        x, y = x.to(device), y.to(device)
        logits = model(x)
        if y.dtype == torch.int64:
            loss = multiclass_loss(logits, y)
        else:
            loss = binary_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        last = float(loss.detach())
    info = {"steps": cfg.steps, "seconds": round(time.perf_counter() - t0, 2), "final_loss": last,
            "encoder_weights_used": weights_used,
            "n_examples_real": int((stream[:, 0] == 0).sum()), "n_examples_synthetic": int((stream[:, 0] == 1).sum()),
            "n_real_images": int(len(real_idx)) if use_real else 0,
            "n_synthetic_images": int(len(np.unique(stream[stream[:, 0] == 1, 1]))) if synth is not None else 0}
    return model.eval(), info


def multiclass_loss(logits, y):
    """Cross-entropy + soft Dice of the foreground classes (per image and class, then the mean): the label-map
    analogue of the binary loss (BCE + soft Dice)."""
    import torch.nn.functional as F

    prob = logits.float().softmax(1)[:, 1:]
    onehot = F.one_hot(y, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (prob * onehot).sum((2, 3))
    soft_dice = 1 - (2 * inter + 1) / (prob.sum((2, 3)) + onehot.sum((2, 3)) + 1)
    return F.cross_entropy(logits, y) + soft_dice.mean()


def run_benchmark(cfg: SegConfig, real_train: np.ndarray, real_stems: list[str], synth: np.ndarray | None,
                  synth_sources: list[str] | None, test_sets: dict, protocols=DEFAULT_PROTOCOLS,
                  low_data_n=LOW_DATA_N, device: str = "cpu", save_dir: str | os.PathLike | None = None,
                  log: Callable[[str], None] | None = None, progress_factory: Callable | None = None,
                  backend: str = "eager", seeds: int = DEFAULT_SEEDS, use_cache: bool = True, low_data_groups=(),
                  groups: list[str] | None = None) -> dict:
    """Train one segmenter per protocol run and seed (``cfg.seed``, ``cfg.seed + 1``, ...), score each on every
    test set, and summarise each run as mean and spread over the seeds. Runs that use no synthetic data are
    cached (they are the same for every synthetic dataset judged against the same real data). Returns a JSON-able
    dict; ``comparisons`` calls a difference a win or a loss only when it is larger than its spread."""
    if not test_sets:
        raise FastsynthError("the downstream benchmark needs at least one real test set")
    if seeds < 1:
        raise FastsynthError(f"--seeds {seeds}: must be at least 1")
    links = synthetic_links(real_stems, synth_sources) if synth is not None and synth_sources else None
    if links is not None and not any(len(v) for v in links):
        links = None  # unconditional pairs: no per-image link
    plan = protocol_plan(protocols, low_data_n, len(real_train), synth is not None, cfg.seed, low_data_groups, groups)
    skipped = [n for n in low_data_n if n > len(real_train)] if "low-data" in protocols else []
    low_data_n = tuple(n for n in low_data_n if n > 0)
    results: dict = {}
    real_models: list = []  # the real-only segmenters, one per seed (for label agreement)

    def segmenter(scfg, name, real_idx, with_synth, run_links, extra, init=None, doing=None):
        """The segmenter of one run and seed: from the cache, else trained (from ``init()``'s weights when given)
        and cached. ``doing``: what the log says while it trains."""
        if use_cache:
            model, info = _cached_segmenter(scfg, real_train, real_idx, device, extra)
            if model is not None:
                if log:
                    log(f"downstream: '{name}' from the cache of trained segmenters")
                return model, info
        state = init() if init is not None else None
        if log:
            log(f"downstream: {doing or f'training {scfg.arch}/{scfg.encoder} on {name!r}'} ({scfg.steps} steps)")
        model, info = train_segmenter(scfg, real_train if real_idx is not None else None, synth if with_synth else None,
                                      real_idx, run_links, device, progress_factory(name) if progress_factory else None,
                                      init_state=state)
        if init is not None:
            info = {**info, "pretrained_steps": scfg.steps}
        if use_cache:
            _store_segmenter(model, scfg, real_train, real_idx, info, extra)
        return model, info

    for run in plan:
        per_seed = []
        for k in range(seeds):
            scfg = dataclasses.replace(cfg, seed=cfg.seed + k)
            name = run["name"] + (f" (seed {scfg.seed})" if seeds > 1 else "")
            # every trained segmenter is cached under its recipe, seed and exact training data: real-only ones are
            # shared by every dataset judged against the same real data, and a judge that was stopped resumes
            if run.get("pretrain"):  # the synthetic run's segmenter of this seed (its cache entry), then real images
                def base_state(scfg=scfg):
                    base_name = f"synthetic (seed {scfg.seed})"
                    base, _ = segmenter(scfg, base_name, None, True, None, (synth, None),
                                        doing=f"training {scfg.arch}/{scfg.encoder} on '{base_name}' to fine-tune")
                    return {k: v.cpu() for k, v in base.state_dict().items()}

                model, info = segmenter(scfg, name, run["real"], False, None, (synth, None, "then-real"),
                                        init=base_state, doing=f"fine-tuning it on the real images: '{name}'")
            else:
                model, info = segmenter(scfg, name, run["real"], run["synthetic"],
                                        links if run["synthetic"] and run["real"] is not None else None,
                                        (synth, links if run["real"] is not None else None) if run["synthetic"]
                                        else None)
            fn = model
            if backend != "eager":
                from ..runtime import make_segmenter_fn

                fn = make_segmenter_fn(model, cfg.resolution, backend, device)
            scores = {t: score(fn, arr, cfg.threshold, device, cfg.class_names) for t, arr in test_sets.items()}
            per_seed.append({**info, "seed": scfg.seed, "test": scores})
            if run["name"] == "real":
                real_models.append(fn)
            if save_dir is not None:
                # the seed in the name unless it is the lone default one, so processes judging other seeds of the
                # same data side by side (--seed S --seeds 1) do not overwrite each other's segmenters
                folder = run["name"].replace("+", "_plus_") + (f"-seed{scfg.seed}" if seeds > 1 or scfg.seed else "")
                save_segmenter(model, scfg, Path(save_dir) / folder,
                               {"protocol": run["name"], "training": info, "scores": scores,
                                "real_train_stems": [real_stems[i] for i in run["real"]] if run["real"] is not None
                                else []})
        results[run["name"]] = {"seeds": per_seed, "test": {t: aggregate([r["test"][t] for r in per_seed])
                                                            for t in test_sets}}
    pairs = list(COMPARISONS) + [(f"low-data-{n}+synthetic", f"low-data-{n}") for n in low_data_n] + \
        [(f"low-data-{n}groups+synthetic", f"low-data-{n}groups") for n in low_data_groups]
    comparisons = [compare_runs(results[a], results[b], a, b, t) for a, b in pairs
                   if a in results and b in results for t in test_sets]
    summary = {}
    for tname in test_sets:
        s = {}
        r = results.get("real", {}).get("test", {}).get(tname)
        y = results.get("synthetic", {}).get("test", {}).get(tname)
        m = results.get("real+synthetic", {}).get("test", {}).get(tname)
        if r and y:
            s["synthetic_over_real_dice"] = y["dice"] / r["dice"] if r["dice"] > 0 else None
            s["synthetic_over_real_iou"] = y["iou"] / r["iou"] if r["iou"] > 0 else None
        if r and m:
            s["real_plus_synthetic_minus_real_dice"] = m["dice"] - r["dice"]
            s["real_plus_synthetic_minus_real_iou"] = m["iou"] - r["iou"]
        f = results.get("synthetic-then-real", {}).get("test", {}).get(tname)
        if r and f:
            s["synthetic_then_real_minus_real_dice"] = f["dice"] - r["dice"]
        summary[tname] = s
    out = {"settings": {**_cfg_dict(cfg), "seeds": [cfg.seed + k for k in range(seeds)],
                        "protocols": list(protocols), "low_data_n": list(low_data_n),
                        **({"low_data_groups": list(low_data_groups)} if low_data_groups else {}), "device": str(device),
                        "inference_backend": backend, "linked_synthetic": links is not None},
           "runs": results, "comparisons": comparisons, "summary": summary, "skipped_low_data_n": skipped}
    if synth is not None and real_models:
        first = "heldout" if "heldout" in test_sets else next(iter(test_sets))
        out["agreement"] = label_agreement(real_models, synth, results["real"], cfg.threshold, device, first,
                                           cfg.class_names)
    return out


# --- statistics over seeds -----------------------------------------------------------------------------------
def aggregate(per_seed: list[dict]) -> dict:
    """Mean over seeds of per-seed test scores, with the spread over seeds (sample std; 0 for one seed)."""
    out = {"n": per_seed[0]["n"], "n_seeds": len(per_seed)}
    for k in ("dice", "iou"):
        v = np.array([r[k] for r in per_seed], np.float64)
        out[k] = float(v.mean())
        out[f"{k}_seed_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out[f"{k}_per_seed"] = [round(float(x), 4) for x in v]
    if "per_class" in per_seed[0]:  # label maps: each class's mean over seeds
        out["per_class"] = {c: {k: float(np.mean([r["per_class"][c][k] for r in per_seed])) for k in ("dice", "iou")}
                            for c in per_seed[0]["per_class"]}
    return out


def compare_runs(cand: dict, base: dict, cand_name: str, base_name: str, test: str) -> dict:
    """Candidate minus baseline in mean Dice, with a verdict that never calls noise a result.

    The spread is the largest of the two runs' seed std and the std of the per-seed differences (runs with the
    same seed share the initialisation and data order). The difference is "better"/"worse" only when it exceeds
    that spread and at least 2 seeds were run; otherwise "not distinguishable"."""
    a, b = cand["test"][test], base["test"][test]
    da, db = np.array(a["dice_per_seed"]), np.array(b["dice_per_seed"])
    n = min(len(da), len(db))
    diff = da[:n] - db[:n]
    spread = max(a["dice_seed_std"], b["dice_seed_std"], float(diff.std(ddof=1)) if n > 1 else 0.0)
    delta = a["dice"] - b["dice"]
    if n < 2:
        verdict = "not distinguishable (1 seed)"
    elif abs(delta) <= spread:
        verdict = "not distinguishable"
    else:
        verdict = "better" if delta > 0 else "worse"
    return {"candidate": cand_name, "baseline": base_name, "test": test, "dice_delta": round(float(delta), 4),
            "spread": round(float(spread), 4), "ratio": round(a["dice"] / b["dice"], 4) if b["dice"] > 0 else None,
            "verdict": verdict}


def label_agreement(models: list, synth: np.ndarray, real_run: dict | None = None, threshold: float = 0.5,
                    device="cpu", test: str = "heldout", class_names=None) -> dict:
    """Do the generated images and masks belong together? Segmenters trained on real pairs predict on the
    synthetic images; their Dice against the synthetic masks (mean over images, then mean ± std over the
    segmenters), next to the same segmenters' Dice on held-out real images (``real_run``)."""
    scores = [score(m, synth, threshold, device, class_names) for m in models]
    vals = np.array([s["dice"] for s in scores], np.float64)
    out = {"dice": float(vals.mean()), "dice_seed_std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
           "dice_per_seed": [round(float(v), 4) for v in vals], "n_synthetic": int(len(synth))}
    if "per_class" in scores[0]:  # label maps: each class's agreement, mean over the segmenters
        out["dice_per_class"] = {c: float(np.mean([s["per_class"][c]["dice"] for s in scores]))
                                 for c in scores[0]["per_class"]}
    ref = (real_run or {}).get("test", {}).get(test)
    if ref:
        out["real_test_set"] = test
        out["real_heldout_dice"] = ref["dice"]
        out["ratio"] = float(vals.mean() / ref["dice"]) if ref["dice"] > 0 else None
    return out


# --- cache of trained segmenters ------------------------------------------------------------------------------
def _segmenter_key(cfg: SegConfig, real_train: np.ndarray, idx: np.ndarray | None, extra=None) -> str:
    """The cache key of a segmenter: its recipe and seed, the real training images and the rows used; with
    ``extra`` = (synthetic pairs, their links to real images or None) also the exact synthetic data."""
    import hashlib

    # stage: ("then-real",) for a synthetic segmenter fine-tuned on real images
    synth, links, *stage = extra if extra is not None else (None, None)
    d = _cfg_dict(cfg)
    if synth is None or idx is None or stage:  # not mixed real + synthetic: alpha changes nothing, so every alpha
        d["alpha"] = SegConfig.alpha            # shares the default's segmenter
    h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
    h.update(np.ascontiguousarray(real_train).tobytes())
    if idx is not None:
        h.update(np.ascontiguousarray(idx, np.int64).tobytes())
    if synth is None:
        h.update(b"real-segmenter-v1")
    else:
        if stage:
            h.update(("stage:" + stage[0]).encode())
        h.update(b"synthetic-segmenter-v1" + (b"" if idx is not None else b"-no-real"))
        h.update(np.ascontiguousarray(synth).tobytes())
        for v in links or []:
            h.update(np.ascontiguousarray(v, np.int64).tobytes() + b"|")
    return h.hexdigest()[:24]


def _cache_folder(cfg, real_train, idx, extra=None) -> Path:
    from ..utils import cache_dir

    return cache_dir() / "segmenters" / _segmenter_key(cfg, real_train, idx, extra)


def _cached_segmenter(cfg, real_train, idx, device, extra=None):
    folder = _cache_folder(cfg, real_train, idx, extra)
    if not (folder / WEIGHTS_NAME).is_file():
        return None, None
    try:
        model, _, meta = load_segmenter(folder, device)
    except Exception:  # a damaged cache entry is retrained, not trusted
        return None, None
    return model, {**meta.get("training", {}), "cached": True}


def _store_segmenter(model, cfg, real_train, idx, info, extra=None) -> None:
    import shutil
    import tempfile

    folder = _cache_folder(cfg, real_train, idx, extra)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        what = "real (cached)" if extra is None else "with synthetic data (cached)"
        save_segmenter(model, cfg, tmp, {"protocol": what, "training": info})
        if folder.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except OSError:  # a read-only cache only costs time
        pass

