"""The latent cache of a training run: the training images encoded once by the autoencoder, with every flip that
training uses as augmentation (a flipped image's latent is not exactly the flipped latent), beside the labels at
full resolution. Training reads it as it reads pixels: the autoencoder never runs in the training loop.

Keyed by everything the latents depend on: the loaded training pairs (a sha256 of the resized arrays, so a changed
file, split or resolution is a new entry), the autoencoder's weights (sha256) and the flips. Written atomically
under ``cache_dir()/latents/`` (never into the package or the run folder), read back on ``--resume``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..utils import cache_dir

CACHE_VERSION = 1


def flip_variants(hflip: bool, vflip: bool) -> list[tuple[bool, bool]]:
    """The (hflip, vflip) variants encoded per image: the identity first."""
    return [(h, v) for v in ((False, True) if vflip else (False,)) for h in ((False, True) if hflip else (False,))]


def _flip(x: torch.Tensor, h: bool, v: bool) -> torch.Tensor:
    if h:
        x = x.flip(-1)
    if v:
        x = x.flip(-2)
    return x


def cache_key(arr: np.ndarray, ae_sha: str, variants) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(arr).tobytes())
    h.update(str(arr.shape).encode() + str(arr.dtype).encode())
    h.update(ae_sha.encode())
    h.update(json.dumps([list(v) for v in variants]).encode() + f"v{CACHE_VERSION}".encode())
    return h.hexdigest()[:24]


def build_latent_cache(arr: np.ndarray, modality, ae, hflip: bool, vflip: bool, progress: bool = True,
                       batch_size: int = 8) -> dict:
    """Encode the loaded training pairs ``arr`` [N, C + 1, H, W] (images in their depth, then the label).

    Returns {"z": float32 [N, V, 32, H/8, W/8] (the autoencoder's own scale), "labels": uint8 [N, V, H, W],
    "variants": [(hflip, vflip)], "mean"/"std": float32 [32] per latent channel over every variant, "key"}.
    Read from the cache when present."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from ..data.codec import images_to_tensor

    variants = flip_variants(hflip, vflip)
    key = cache_key(arr, ae.sha256, variants)
    path = cache_dir() / "latents" / f"{key}.safetensors"
    if path.exists():
        try:
            d = load_file(str(path))
            return {"z": d["z"], "labels": d["labels"], "variants": variants, "mean": d["mean"], "std": d["std"],
                    "key": key}
        except Exception:  # a broken entry: encode again
            path.unlink(missing_ok=True)
    c = modality.channels
    n = len(arr)
    zs, labels = [], []
    bar = tqdm(total=n * len(variants), desc="encoding the training images (once; cached)", unit="image",
               disable=not progress)
    for i in range(0, n, batch_size):
        chunk = arr[i:i + batch_size]
        imgs = images_to_tensor(chunk[:, :c].astype(np.int32) if chunk.dtype == np.uint16 else chunk[:, :c],
                                modality)
        lab = torch.from_numpy(np.ascontiguousarray(chunk[:, c]).astype(np.uint8))
        zv, lv = [], []
        for h, v in variants:
            zv.append(ae.encode(_flip(imgs, h, v), batch_size=batch_size))
            lv.append(_flip(lab, h, v))
            bar.update(len(chunk))
        zs.append(torch.stack(zv, 1))
        labels.append(torch.stack(lv, 1))
    bar.close()
    z = torch.cat(zs).float().contiguous()
    lab = torch.cat(labels).contiguous()
    flat = z.transpose(0, 2).reshape(z.shape[2], -1)  # [32, everything else]
    mean, std = flat.mean(1), flat.std(1).clamp(min=1e-4)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    save_file({"z": z, "labels": lab, "mean": mean.contiguous(), "std": std.contiguous()}, str(tmp),
              metadata={"autoencoder_sha256": ae.sha256, "variants": json.dumps(variants)})
    os.replace(tmp, path)
    print(f"latent cache: {n} images x {len(variants)} flips -> {path}", file=sys.stderr)
    return {"z": z, "labels": lab, "variants": variants, "mean": mean, "std": std, "key": key}


class LatentData:
    """The training examples of a latent model: normalised latents and mask grids per (image, flip variant), and
    the full-resolution labels the inpainting regions are drawn from."""

    def __init__(self, cache: dict, space, modality):
        from ..data.codec import labels_to_channels

        z = cache["z"]
        n, v = z.shape[:2]
        self.n, self.v = n, v
        mean, std = cache["mean"].view(1, 1, -1, 1, 1), cache["std"].view(1, 1, -1, 1, 1)
        self.z = ((z - mean) / std).float()
        self.labels = cache["labels"]  # uint8 [N, V, H, W]
        grids = []
        for i in range(n):
            ch = labels_to_channels(self.labels[i], modality)  # [V, K-1, H, W]
            grids.append(space.labels_to_grid(ch))
        self.grid = torch.stack(grids)  # [N, V, M, h, w]
        self.modality = modality

    def batch(self, idx: torch.Tensor, var: torch.Tensor):
        """(x0 [B, 32 + M, h, w], full-resolution label channels [B, K-1, H, W])."""
        from ..data.codec import labels_to_channels

        x0 = torch.cat([self.z[idx, var], self.grid[idx, var]], dim=1)
        return x0, labels_to_channels(self.labels[idx, var], self.modality)
