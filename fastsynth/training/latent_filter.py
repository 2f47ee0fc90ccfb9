"""A segmenter on the latent grid, trained on a latent model's own training pairs: the label-agreement filter of
``generate --keep-agreeing`` scores a candidate pair from its latent and its mask before the decoder runs, so the
decoder (about half of a 256² candidate's cost on a CPU) runs only on the kept pairs.

Two ways to teach it:

- real pairs (the default): the model's training images encoded by its autoencoder (both horizontal flips, through
  the latent cache that training uses), at the autoencoder's own scale; the target is the real mask at
  ``resolution``;
- distilled (``distilled=``, from ``pipeline.distill_candidates``): the model's own unfiltered candidates, their
  latents caught before decoding; the target is what an image filter (the model's own, by default) segments in the
  decoded image, so the latent filter learns to agree with the image filter, not with the real masks. It scores the
  candidates generation actually draws, from the latent generation actually has.

The held-out split of the model scores the segmenter either way, as the judge scores its real segmenters; a
distilled filter also reports how well it ranks held-back candidates as its teacher does."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FastsynthError

# a U-Net over the 32x32 grid of a 256² model: a resnet18 of depth 3 (its stem halves the grid twice, layer2 once:
# 4x4 at the bottom), a light decoder; about 0.7 M parameters, about 1 ms per candidate on a CPU thread
LATENT_SEG = dict(arch="unet", encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(64, 32, 16))


def _encode(arr: np.ndarray, modality, ae, batch_size: int = 16) -> torch.Tensor:
    from ..data.codec import images_to_tensor

    c = modality.channels
    return torch.cat([ae.encode(images_to_tensor(arr[i:i + batch_size, :c], modality), batch_size=batch_size)
                      for i in range(0, len(arr), batch_size)]).float()


def _fit(z: torch.Tensor, target: torch.Tensor, cfg, progress: bool, hflip: bool) -> torch.nn.Module:
    """Train the latent-grid segmenter of ``cfg`` on latents [N, 32, h, w] and masks [N, 1, r, r] (float 0/1). Flips
    on the grid, each with probability 1/2: vertical always, horizontal with ``hflip`` (the real path encodes the
    horizontal flips instead). Deterministic per ``cfg.seed``."""
    from tqdm.auto import tqdm

    from ..models.segmenter import binary_loss, build_model

    torch.manual_seed(cfg.seed)
    seg, _ = build_model(cfg)
    opt = torch.optim.AdamW(seg.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps, r = cfg.steps, cfg.resolution
    warm = max(1, steps // 20)  # a short linear warm-up, then cosine down to 0 at the last step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / warm if k < warm else
                                              0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, steps - warm))))
    g = torch.Generator().manual_seed(cfg.seed)
    seg.train()
    bar = tqdm(range(steps), desc="training the latent filter", unit="step", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(z), (cfg.batch_size,), generator=g)
        zb, tb = z[idx].float(), target[idx].float()
        if torch.rand(1, generator=g).item() < 0.5:
            zb, tb = zb.flip(-2), tb.flip(-2)
        if hflip and torch.rand(1, generator=g).item() < 0.5:
            zb, tb = zb.flip(-1), tb.flip(-1)
        logits = F.interpolate(seg(zb), size=(r, r), mode="bilinear", align_corners=False)
        loss = binary_loss(logits, tb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return seg.eval()


def train_latent_filter(model: str | os.PathLike, out: str | os.PathLike, steps: int = 1500, batch_size: int = 32,
                        lr: float = 1e-3, resolution: int = 128, seed: int = 0, progress: bool = True,
                        dtype: torch.dtype | None = None, distilled: dict | None = None) -> Path:
    """Train the latent-grid segmenter of a latent ``model`` and save it to ``out`` (a segmenter folder, ``input:
    latent``). Returns ``out``. ``dtype``: store the weights in it (float16 to ship). ``distilled``: teach it on the
    model's own candidates labelled by an image filter (``pipeline.distill_candidates``: latents ``z``, ``masks``,
    the teacher's masks ``teach``, its ``resolution`` and record), at the teacher's resolution; else on the real
    training pairs at ``resolution``."""
    from ..data.modality import modality_from_config
    from ..metrics.io import load_real, resolve_real
    from ..models import load_model, resolve_model_dir
    from ..models.autoencoder import load_autoencoder
    from ..models.segmenter import SegConfig, dice_iou, mask_at, predict_latent, save_segmenter
    from ..utils import public_model_name
    from .latent_cache import build_latent_cache

    mdir = resolve_model_dir(model)
    net, _ = load_model(mdir)
    c = net.config
    if not c.autoencoder:
        raise FastsynthError(f"{model}: a pixel model; the latent filter is for latent models (its pixel pairs "
                             "are scored by an image segmenter: `evaluate --downstream` saves one)")
    if c.class_names:
        raise FastsynthError(f"{model}: a model of label maps; the agreement filter scores binary masks for now")
    modality = modality_from_config(c)
    distill = len(distilled["z"]) if distilled else 0
    if distilled:
        resolution = int(distilled["resolution"])
    src, rset = resolve_real(mdir)  # the model's own split and training data (its provenance, or FASTSYNTH_DATA)
    _, test_arr = load_real(src, c.resolution, rset.test_stems, modality)
    ae = load_autoencoder(c.autoencoder, c.autoencoder_sha256, channels=c.image_channels)
    cfg = SegConfig(**LATENT_SEG, resolution=resolution, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    hflip=True, vflip=True, input="latent", autoencoder=c.autoencoder,
                    autoencoder_sha256=c.autoencoder_sha256)
    t0 = time.perf_counter()
    if distill:
        z_all, masks, teach = distilled["z"], distilled["masks"], distilled["teach"]
        # the last tenth of the candidates is held back: how well does the filter rank them as its teacher does?
        n_fit = max(1, distill - max(1, distill // 10)) if distill > 1 else 1
        z, target = z_all[:n_fit], torch.from_numpy(teach[:n_fit, None])
    else:
        _, train_arr = load_real(src, c.resolution, rset.train_stems, modality)
        cache = build_latent_cache(train_arr, modality, ae, hflip=True, vflip=False, progress=progress)
        z = cache["z"].flatten(0, 1)  # [N * V, 32, h, w]
        target = mask_at(cache["labels"].flatten(0, 1), resolution)
    z_test = _encode(test_arr, modality, ae)
    prep_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    seg = _fit(z, target, cfg, progress, hflip=bool(distill))
    train_s = time.perf_counter() - t1
    pred = predict_latent(seg, z_test, resolution, cfg.threshold)
    dice, iou = dice_iou(pred, mask_at(test_arr[:, modality.channels], resolution)[:, 0].numpy())
    scores = {"held-out": {"dice": float(dice.mean()), "iou": float(iou.mean()), "n": len(dice)}}
    if distill:
        # "distilled": taught by an image filter (itself trained on real pairs of the model's training split) on
        # the model's own candidates; the model's training stems are recorded, as for a real-only filter
        held = slice(n_fit, None)
        m_at = mask_at(masks[held], resolution)[:, 0].numpy()
        a_teacher = dice_iou(teach[held], m_at)[0]
        a_self = dice_iou(predict_latent(seg, z_all[held].float(), resolution, cfg.threshold), m_at)[0]
        keep_t = a_teacher >= np.quantile(a_teacher, 0.5)
        keep_s = a_self >= np.quantile(a_self, 0.5)
        from scipy.stats import spearmanr  # with segmentation_models_pytorch in the eval extra

        rho = float(spearmanr(a_self, a_teacher)[0]) if len(a_self) > 2 else None  # too few to rank
        rho = None if rho is not None and not np.isfinite(rho) else rho  # a constant score ranks nothing
        held_back = {"n": int(len(a_self)), "spearman_with_teacher": rho,
                     "jaccard_of_kept_halves": float((keep_t & keep_s).sum() / max(1, (keep_t | keep_s).sum()))}
        tmeta = {**distilled["record"], "candidates_fit": int(n_fit), "held_back_candidates": held_back}
        protocol, training = "distilled", {"candidates": int(distill), "latents": len(z)}
    else:
        tmeta, protocol, training = {}, "real", {"images": len(train_arr), "latents": len(z)}
    meta_out = {"protocol": protocol, "filter_of": public_model_name(model), "real_train_stems": list(rset.train_stems),
                "scores": scores, **({"distilled": tmeta} if distill else {}),
                "training": {**training, "prepare_s": round(prep_s, 1), "train_s": round(train_s, 1),
                             "encoder_weights_used": None}}
    extra = (f"; {held_back['n']} held-back candidates ranked as the teacher ranks them: Spearman "
             f"{held_back['spearman_with_teacher']:.2f}") if distill and rho is not None else ""
    print(f"latent filter: held-out Dice {dice.mean():.3f} (IoU {iou.mean():.3f}, {len(dice)} images){extra} -> "
          f"{out}", file=sys.stderr)
    return save_segmenter(seg, cfg, out, meta_out, dtype=dtype)
