"""Replace the bundled default model with a training run's EMA model, stored as fp16 safetensors.

    python -m fastsynth.models.bundle runs/kvasir64 [--notes benchmarks/bundled_model_notes.md]
    python -m fastsynth.models.bundle runs/pd16/round-2-4steps --as bundled-fast --notes NOTES.md
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from ..data.provenance import FIELDS as PROVENANCE_FIELDS
from ..utils import public_json
from .card import model_card
from .denoiser import BUNDLED_MODEL_DIR, BUNDLED_MODELS, load_model, save_model


def evaluation_summary(metrics: dict) -> dict:
    """The compact record of a `fastsynth evaluate --downstream` result kept in a model's fastsynth.json (what
    `fastsynth info` prints): per protocol Dice/IoU as mean and seed std on the held-out split, the comparisons'
    verdicts, label agreement, grain, FID/KID and the command."""
    ds = metrics.get("downstream") or {}
    out = {"command": metrics.get("command"), "n_synthetic": metrics.get("n_synthetic"),
           "synthetic": metrics.get("synthetic_manifest"), "settings": ds.get("settings"),
           "seconds": metrics.get("seconds"),
           "heldout": {name: {k: round(v, 4) for k, v in run["test"]["heldout"].items()
                              if k in ("dice", "iou", "dice_seed_std", "iou_seed_std")}
                       for name, run in ds.get("runs", {}).items()},
           "comparisons": ds.get("comparisons")}
    for key in ("agreement", "hf", "fid_kid"):
        if key in metrics:
            out[key] = {k: v for k, v in metrics[key].items() if not isinstance(v, (list, dict))}
    if "memorization" in metrics:
        out["memorization"] = {k: metrics["memorization"][k] for k in ("n_flagged", "n_synthetic", "method")
                               if k in metrics["memorization"]}
    return public_json(out)  # no local paths (the command's folders, the Inception weights file)


def bundle(run_or_model: str, dest: Path = BUNDLED_MODEL_DIR, extra_card: str = "",
           training_data_from: str | None = None, evaluation: dict | None = None,
           training_data: dict | None = None, generate_defaults: dict | None = None,
           filter_segmenter: str | None = None) -> Path:
    """``filter_segmenter``: a segmenter trained on the model's own training split, shipped in the folder as
    ``filter-segmenter`` (fp16) and made the default of ``generate --keep-agreeing`` for new pairs."""
    net, meta = load_model(run_or_model)
    meta = {k: v for k, v in meta.items() if k not in ("path", "evaluation")}
    if generate_defaults is not None:  # the settings this model's data was measured best with, per mode
        from ..config import check_model_defaults
        from ..errors import FastsynthError

        try:
            check_model_defaults(generate_defaults)
        except FastsynthError as exc:
            raise SystemExit(f"--generate-defaults: {exc}") from None
        meta["generate_defaults"] = generate_defaults
    if evaluation is not None:
        meta["evaluation"] = {"downstream": evaluation_summary(evaluation)}
    if training_data_from:  # provenance (name, licence, citation) recorded with another model of the same data
        _, other = load_model(training_data_from)
        if "training_data" in other:
            meta["training_data"] = other["training_data"]
    if training_data:  # provenance given field by field (name, license, citation, url) overrides what is known
        meta["training_data"] = {**meta.get("training_data", {}), **{k: v for k, v in training_data.items() if v}}
    if filter_segmenter:
        pairs = dict((meta.get("generate_defaults") or {}).get("pairs") or {})
        meta["generate_defaults"] = {**(meta.get("generate_defaults") or {}),
                                     "pairs": {**pairs, "keep_agreeing": FILTER_SEGMENTER}}
    meta["stored_dtype"] = "float16"
    meta = public_json(meta)  # what save_model writes: the card is rendered from the same public copy
    src = Path(run_or_model)
    src_model = src / "model" if (src / "model").is_dir() else src
    # a distilled student keeps the card distill wrote (model_card describes training runs)
    card = model_card(meta) if "training" in meta and "distillation" not in meta else (
        (src_model / "README.md").read_text() if (src_model / "README.md").exists() else "")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(net, tmp, meta=meta, dtype=torch.float16, card=card + extra_card)
    for extra in ("split.json", "mask_codec.safetensors"):  # the split; a latent model's mask autoencoder
        if (src_model / extra).exists():
            shutil.copy(src_model / extra, tmp / extra)
    if filter_segmenter:
        _ship_segmenter(filter_segmenter, tmp / FILTER_SEGMENTER, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


FILTER_SEGMENTER = "filter-segmenter"
LATENT_FILTER = "latent-filter"


def ship_filter(model_dir: Path, segmenter: str, min_agreement: float) -> Path:
    """Ship ``segmenter`` (a real-only segmenter of the model's training split: an image one from `evaluate
    --downstream`, or a latent one from `fastsynth train-filter`) in a shipped model's folder as its default filter
    for new pairs at ``min_agreement``, in place: the weights and the card stay; the folder of the filter it replaces
    is removed."""
    from .segmenter import load_segmenter
    from ..utils import write_json_atomic

    _, cfg, _ = load_segmenter(segmenter)
    name = LATENT_FILTER if cfg.input == "latent" else FILTER_SEGMENTER
    if not 0 <= min_agreement <= 1:
        raise SystemExit(f"--min-agreement {min_agreement}: a Dice between 0 and 1")
    meta_path = model_dir / "fastsynth.json"
    meta = json.loads(meta_path.read_text())
    if cfg.input == "latent" and (cfg.autoencoder_sha256 != (meta.get("latent") or {}).get("autoencoder_sha256")):
        raise SystemExit(f"{segmenter}: a latent filter of another autoencoder than {model_dir.name}'s")
    tmp = model_dir / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _ship_segmenter(segmenter, tmp, model_dir)
    old = ((meta.get("generate_defaults") or {}).get("pairs") or {}).get("keep_agreeing")
    shutil.rmtree(model_dir / name, ignore_errors=True)
    tmp.rename(model_dir / name)
    pairs = {**((meta.get("generate_defaults") or {}).get("pairs") or {}), "keep_agreeing": name,
             "min_agreement": float(min_agreement)}
    meta["generate_defaults"] = {**(meta.get("generate_defaults") or {}), "pairs": pairs}
    write_json_atomic(meta_path, meta)
    if old and old != name:
        shutil.rmtree(model_dir / old, ignore_errors=True)
    return model_dir / name


def _ship_segmenter(src: str, dest: Path, model_dir: Path) -> None:
    """The segmenter folder ``src`` as fp16 at ``dest``, refused unless it was trained on real pairs of the model's
    training split only (its held-out pairs stay clean for every evaluation); its list of stems is not copied."""
    from .segmenter import load_segmenter, save_segmenter
    from ..metrics.leakage import model_split

    model, cfg, meta = load_segmenter(src)
    stems = meta.get("real_train_stems")
    # "distilled": a latent filter taught by an image filter on the model's own candidates (train-filter --distill);
    # the real data behind it is the model's training split, recorded as for a real-only one
    ok = ("real", "distilled") if cfg.input == "latent" else ("real",)
    if meta.get("protocol") not in ok or not stems:
        raise SystemExit(f"--filter-segmenter {src}: not a real-only segmenter with its training stems recorded "
                         "(save one with `fastsynth evaluate --downstream --protocols real`)")
    held = set(model_split(model_dir) or ())
    if held & set(stems):
        raise SystemExit(f"--filter-segmenter {src}: trained on {len(held & set(stems))} pairs the model holds out")
    keep = {k: meta[k] for k in ("protocol", "scores", "training", "distilled") if k in meta}
    save_segmenter(model, cfg, dest, {**keep, "real_train": f"{len(stems)} pairs of the model's training split "
                                                            "(split.json), none of its held-out pairs"},
                   dtype=torch.float16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", help="training run folder or model folder")
    ap.add_argument("--notes", default=None, help="markdown file appended to the model card")
    ap.add_argument("--training-data-from", default=None, metavar="MODEL",
                    help="copy the training-data provenance (name, licence, citation) from this model's metadata, "
                         "e.g. 'bundled' when the data folder carries no dataset card")
    ap.add_argument("--evaluation", default=None, metavar="METRICS_JSON",
                    help="a `fastsynth evaluate --downstream` result of this model's data, recorded in its "
                         "fastsynth.json (shown by `fastsynth info`)")
    for field in PROVENANCE_FIELDS:
        ap.add_argument(f"--data-{field}", default=None,
                        help=f"the training data's {field} (recorded in the card; overrides the data folder's)")
    ap.add_argument("--as", dest="name", choices=tuple(k for k in BUNDLED_MODELS if k != "default"),
                    default="bundled", help="which shipped model to replace (bundled-fast: the distilled few-step "
                                            "student; bundled-ultrasound: the greyscale ultrasound model; "
                                            "bundled-hippocampus: the 16-bit MRI label-map model; bundled-256: the "
                                            "256x256 latent polyp model)")
    ap.add_argument("--filter-segmenter", default=None, metavar="DIR",
                    help="a real-only segmenter trained on the model's training split (saved by fastsynth evaluate "
                         "--downstream), shipped as the default of generate --keep-agreeing (its threshold: "
                         "min_agreement in --generate-defaults)")
    ap.add_argument("--ship-filter", default=None, metavar="DIR",
                    help="only replace the shipped model's (--as) default filter with this segmenter (image or latent "
                         "input), at --min-agreement; RUN is then ignored")
    ap.add_argument("--min-agreement", type=float, default=None, help="the threshold of --ship-filter")
    ap.add_argument("--generate-defaults", default=None, metavar="JSON",
                    help='the model\'s measured generation defaults per mode, e.g. \'{"pairs": {"sampler": "unipc", '
                         '"steps": 12, "redraw": false}}\' (fastsynth.json generate_defaults)')
    ap.add_argument("--dest", default=None, metavar="DIR",
                    help="write the fp16 model folder here instead of replacing a shipped model (e.g. weights kept "
                         "for a warm restart: no optimizer state, no checkpoint)")
    a = ap.parse_args()
    if a.ship_filter:
        if a.min_agreement is None:
            raise SystemExit("--ship-filter needs --min-agreement")
        d = ship_filter(BUNDLED_MODELS[a.name], a.ship_filter, a.min_agreement)
        print(f"shipped {a.ship_filter} -> {d} (default filter of {a.name} at Dice >= {a.min_agreement:g})")
        return
    extra = Path(a.notes).read_text() if a.notes else ""
    d = bundle(a.run, dest=Path(a.dest) if a.dest else BUNDLED_MODELS[a.name], extra_card=extra, training_data_from=a.training_data_from,
               evaluation=json.loads(Path(a.evaluation).read_text()) if a.evaluation else None,
               training_data={f: getattr(a, f"data_{f}") for f in PROVENANCE_FIELDS},
               generate_defaults=json.loads(a.generate_defaults) if a.generate_defaults else None,
               filter_segmenter=a.filter_segmenter)
    print(f"bundled {a.run} -> {d} ({(d / 'model.safetensors').stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
