"""The model card (README.md of a model folder): a pure function of the model's metadata (fastsynth.json)."""

from __future__ import annotations

from ..data.modality import modality_from_dict
from ..utils import hub_license, is_share_alike, public_text


def model_card(meta: dict) -> str:
    """The card of a denoiser folder from its metadata: training data, steps, wall time, warm starts."""
    t = meta["training"]
    m = modality_from_dict(meta.get("data"))
    return f"""---
library_name: fastsynth
license: {hub_license((meta.get('training_data') or {}).get('license'))}
tags: [diffusion, medical-imaging, synthetic-data, segmentation]
---
# fastsynth joint image+mask denoiser

{_space(meta, m)}, conditioned on known values so one network makes new
pairs, images from given {'masks' if m.binary else 'label maps'}, and new structures inpainted into real images.

- Training data: {(meta.get('training_data') or {}).get('name') or 'unknown'} ({t['n_train']} training pairs; {t['n_test']} held out in split.json)
- Images and labels: {m.describe()}
- Steps trained: {_steps_line(t)} at batch size {t['batch_size']} (preset `{t['preset']}`)
- Wall time: {t['wall_time_s'] / 60:.1f} min on {t['hardware']}
- Command: `{public_text(t['command'])}`{_init_line(t.get('init'))}
- fastsynth {meta['fastsynth_version']}, torch {t['torch']}
{_share_alike(meta)}"""


def _share_alike(meta: dict) -> str:
    """The share-alike notice of a model trained on share-alike data (it reaches every dataset the model makes too)."""
    lic = (meta.get("training_data") or {}).get("license")
    if not is_share_alike(lic):
        return ""
    return (f"\n**Share-alike**: trained on data licensed {lic}; every dataset this model makes carries that licence, "
            "the data's attribution and this notice in its card.\n")


def _space(meta: dict, m) -> str:
    lat = meta.get("latent")
    if not lat:
        return (f"A pixel-space DDPM (diffusers UNet2DModel, {meta['parameters'] / 1e6:.2f} M parameters) over "
                f"{_channels(m)}\nat {meta['resolution']}x{meta['resolution']}")
    g = meta["resolution"] // 8
    iou = lat.get("mask_round_trip_iou_train") or {}
    return (f"A latent DDPM (diffusers UNet2DModel, {meta['parameters'] / 1e6:.2f} M parameters) over the "
            f"{g}x{g} latent grid of {meta['resolution']}x{meta['resolution']} pairs: the image as the 32-channel "
            f"latent of the {lat['autoencoder'].upper()} tiny autoencoder (MIT, Ollin Boer Bohan, "
            "github.com/madebyollin/taesd; shipped in fastsynth/weights with its licence; sha256 "
            f"{lat['autoencoder_sha256'][:12]}...), the {'mask' if m.binary else 'label map'} in the grid as "
            f"`{lat['mask_repr']}` (round trip IoU of the training labels {iou.get('mean', float('nan')):.3f}), "
            f"{_channels(m)} in the output")


def steps_trained_total(training: dict) -> int | None:
    """The optimiser steps of this run and of every run it was warm-started from (None: not recorded)."""
    total, init = training.get("steps_done"), training.get("init")
    if total is None:
        return None
    while init:
        total += init.get("steps_done") or 0
        init = init.get("earlier")
    return total


def _steps_line(t: dict) -> str:
    total = steps_trained_total(t)
    if not t.get("init") or total is None:
        return f"{t['steps_done']}"
    return f"{t['steps_done']} in this run, {total} in all with the warm starts below,"


def _init_line(init: dict | None) -> str:
    """The warm-start history of a model, one clause per earlier run (oldest last)."""
    parts = []
    while init:
        on = f", trained on `{init['data']}`" if init.get("data") else ""
        parts.append(f"`{init['from']}` ({init.get('steps_done')} steps, {(init.get('wall_time_s') or 0) / 60:.0f} min{on})")
        init = init.get("earlier")
    return ("\n- Warm-started from " + ", itself warm-started from ".join(parts)) if parts else ""


def _channels(m) -> str:
    img = "RGB" if m.channels == 3 else "a greyscale channel"
    lab = "a binary mask channel" if m.binary else f"{m.label_channels} label channels (one per foreground class of {m.num_classes})"
    return f"{img} + {lab}"
