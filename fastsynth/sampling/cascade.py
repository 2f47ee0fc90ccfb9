"""Cascade pairs (``generate --base MODEL``): a lower-resolution model draws each pair, and the model re-renders it at
its own resolution.

The base model's pair (its own generation defaults, the row's own seed) is upsampled: the image bicubically, the
label channels bilinearly and decoded with the resolution-scaled clean-up, so the mask is a clean mask of the
output's resolution and is kept exactly. The upsampled image (through the autoencoder's encoder for a latent model)
is noised to a level part-way down the sampler's schedule and denoised conditioned on that mask (SDEdit, Meng et
al. 2022): ``strength`` is the fraction of the sampler's steps that run, so low strengths keep the base image's
layout and add the detail of the higher resolution, and 1 draws a new image for the base mask from pure noise.
The base model decides where the structures are and how they look at its resolution (small models learn the
image-mask agreement fastest); the model decides the detail. The idea is the cascaded diffusion of Ho et al. 2022
("Cascaded Diffusion Models for High Fidelity Image Generation"), here with a model that was not trained as a
super-resolution model but conditions on the mask.

Per row: the base pass uses the row's seed, the re-rendering pass its own stream of it (``CASCADE_SEED_XOR``), so a
pair depends only on (models, settings, seed, index), as every generated row does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..conditioning import cond_from_masks
from ..config import GenerateConfig
from ..data.codec import images_to_tensor, labels_to_channels, tensor_to_raw
from ..data.modality import Modality
from .masks import decode_labels
from .pairs import Conditioning, _sample_rows, guided_fn, sample_pairs

CASCADE_SEED_XOR = 0x5851F42D4C957F2D


def raw_to_chw(images_raw: np.ndarray) -> np.ndarray:
    """Raw images as generate writes them ([N, H, W, 3] RGB, [N, H, W] grey) -> [N, C, H, W]."""
    a = np.asarray(images_raw)
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a[:, None]


def upsample_pairs(images_raw: np.ndarray, masks: np.ndarray, modality: Modality, res: int, opening: int):
    """(images in [-1, 1] [N, C, res, res], masks / label maps uint8 [N, res, res]): images bicubic (clipped), label
    channels bilinear, then decoded like generated masks (threshold at the midpoint, the clean-up for ``res``)."""
    x = images_to_tensor(raw_to_chw(images_raw), modality)
    x = F.interpolate(x, size=(res, res), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)
    ch = F.interpolate(labels_to_channels(masks, modality), size=(res, res), mode="bilinear", align_corners=False)
    return x, decode_labels(ch, 0.0, opening)


@torch.inference_mode()
def refine_pairs(model_fn, scheduler, cfg: GenerateConfig, images_raw: np.ndarray, masks: np.ndarray, seeds,
                 modality: Modality, space, res: int, opening: int, device) -> tuple[np.ndarray, np.ndarray]:
    """The pairs re-rendered at ``res``: (images in the modality's depth, masks uint8 [N, res, res])."""
    x, masks_up = upsample_pairs(images_raw, masks, modality, res, opening)
    labels = labels_to_channels(masks_up, modality)
    if space is not None:
        x, labels = space.encode_images(x), space.labels_to_grid(labels)
    init = torch.cat([x, labels], dim=1)
    known, indicator = cond_from_masks(labels, channels=init.shape[1])
    fn = guided_fn(model_fn, cfg, scheduler)
    grid = res if space is None else space.grid
    x0 = _sample_rows(fn, scheduler, cfg, [int(s) ^ CASCADE_SEED_XOR for s in seeds], known, indicator, grid, device,
                      init=init, strength=cfg.strength)
    rgb = x0[:, :x.shape[1]]
    if space is not None:
        rgb = space.decode_images(rgb)
    return tensor_to_raw(rgb, modality), masks_up.numpy()


def cascade_pairs(base, model_fn, scheduler, cfg: GenerateConfig, indices, seeds, modality: Modality, space, res: int,
                  opening: int, device):
    """One batch of cascade rows: the base model's pairs (``base``: a ``BaseModel``), re-rendered at ``res``."""
    images, masks, _ = sample_pairs(base.fn, base.scheduler, base.cfg, Conditioning("pairs", [], None, "", modality),
                                    indices, seeds, base.resolution, 0, base.opening, device)
    images, masks = refine_pairs(model_fn, scheduler, cfg, images, masks, seeds, modality, space, res, opening, device)
    return images, masks, [""] * len(indices)
