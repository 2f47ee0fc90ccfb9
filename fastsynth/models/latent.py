"""The space a model's diffusion runs in: pixels, or the latent grid of an image autoencoder with the mask in it.

A pixel model is a latent model whose autoencoder is the identity (``PixelSpace``). A latent model
(``LatentSpace``) diffuses ``[z | mask grid]`` at resolution / 8: ``z`` is the autoencoder's latent of the image,
normalised per channel by statistics of the training cache (stored in the model's config), and the mask grid is
the label map in one of the representations of ``MASK_REPRS``, in [-1, 1] like the pixel model's mask channel:

- ``pool``: each foreground class's {-1, +1} channel average-pooled to the latent grid (K - 1 channels); decoded by
  bicubic upsampling of the grid to full resolution (sub-cell boundaries survive as the pooled fraction);
- ``s2d``: the channel average-pooled to 4x the latent grid and folded into it (space-to-depth, 16 channels per
  class); decoded by unfolding and bilinear upsampling.

Both decode to label-channel logits at full resolution, where the pixel model's clean-up (threshold / argmax, the
resolution-scaled opening) makes the final mask, so a 256^2 pair has a 256^2 mask with exactly the pixel model's
values ({0, 255} or 0..K-1). Round trip of the 1000 Kvasir-SEG masks at 256^2 (benchmarks/NOTES.md): pool IoU
0.982 mean (p5 0.961), s2d 0.997 (p5 0.994).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import MASK_AE_CHANNELS, MASK_REPRS, S2D_FACTOR, mask_grid_channels
from ..errors import FastsynthError

__all__ = ["MASK_REPRS", "LatentSpace", "PixelSpace", "mask_grid_channels", "model_space"]


MASK_CODEC_NAME = "mask_codec.safetensors"  # ae: the mask autoencoder's weights, in the model folder


class MaskCodec(torch.nn.Module):
    """``ae``: a small convolutional mask autoencoder trained here on the training labels
    (``fastsynth.training.mask_codec``): label channels [N, K-1, H, W] in {-1, +1} -> a grid [N, 4(K-1), H/8, W/8]
    in [-1, 1] (tanh) -> label-channel logits at full resolution. Three stride-2 convolutions each way."""

    def __init__(self, label_channels: int = 1, width: int = 32):
        super().__init__()
        nn = torch.nn
        k, m, w = label_channels, label_channels * MASK_AE_CHANNELS, width
        # narrow at full resolution (8 channels), where a mask carries little information and costs the most
        self.encoder = nn.Sequential(
            nn.Conv2d(k, w // 4, 3, 2, 1), nn.SiLU(), nn.Conv2d(w // 4, w, 3, 2, 1), nn.SiLU(),
            nn.Conv2d(w, w, 3, 2, 1), nn.SiLU(), nn.Conv2d(w, m, 3, 1, 1), nn.Tanh())
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        self.decoder = nn.Sequential(
            nn.Conv2d(m, w, 3, 1, 1), nn.SiLU(), up(), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(),
            up(), nn.Conv2d(w, w // 2, 3, 1, 1), nn.SiLU(), up(), nn.Conv2d(w // 2, w // 4, 3, 1, 1), nn.SiLU(),
            nn.Conv2d(w // 4, k, 3, 1, 1))

    def encode(self, label_channels: torch.Tensor) -> torch.Tensor:
        return self.encoder(label_channels.float())

    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        return self.decoder(grid.float())


def load_mask_codec(path, label_channels: int) -> MaskCodec:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    codec = MaskCodec(label_channels)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FastsynthError(f"{path}: the model's mask autoencoder is unreadable ({exc})") from None
    missing, unexpected = codec.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise FastsynthError(f"{path}: weights do not match the mask autoencoder (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
    return codec.eval().requires_grad_(False)


def labels_to_grid(label_channels: torch.Tensor, mask_repr: str, scale: int = 8, codec=None) -> torch.Tensor:
    """Full-resolution label channels [N, K-1, H, W] in {-1, +1} -> the mask grid [N, M, H/scale, W/scale]."""
    x = label_channels.float()
    if mask_repr == "pool":
        return F.avg_pool2d(x, scale)
    if mask_repr == "s2d":
        return F.pixel_unshuffle(F.avg_pool2d(x, scale // S2D_FACTOR), S2D_FACTOR)
    if mask_repr == "ae":
        with torch.inference_mode():
            return torch.cat([codec.encode(x[i:i + 64]) for i in range(0, len(x), 64)])
    raise FastsynthError(f"mask representation {mask_repr!r}: choose one of {', '.join(MASK_REPRS)}")


def grid_to_logits(grid: torch.Tensor, mask_repr: str, scale: int = 8, codec=None) -> torch.Tensor:
    """The mask grid [N, M, h, w] -> label-channel logits at full resolution [N, K-1, h*scale, w*scale]."""
    g = grid.float()
    if mask_repr == "pool":
        return F.interpolate(g, scale_factor=scale, mode="bicubic", align_corners=False)
    if mask_repr == "s2d":
        return F.interpolate(F.pixel_shuffle(g, S2D_FACTOR), scale_factor=scale // S2D_FACTOR, mode="bilinear",
                             align_corners=False)
    if mask_repr == "ae":
        with torch.inference_mode():
            return torch.cat([codec.decode(g[i:i + 64]) for i in range(0, len(g), 64)])
    raise FastsynthError(f"mask representation {mask_repr!r}: choose one of {', '.join(MASK_REPRS)}")


def grid_region(region01: torch.Tensor, scale: int = 8) -> torch.Tensor:
    """A full-resolution region [N, 1, H, W] in {0, 1} -> the latent cells that touch it [N, 1, H/scale, W/scale]."""
    return F.max_pool2d(region01.float(), scale)


class PixelSpace:
    """The identity: the model diffuses the image and its label channels as they are."""

    latent = False
    scale = 1

    def __init__(self, resolution: int, label_channels: int = 1):
        self.resolution = self.grid = resolution
        self.grid_channels = label_channels

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def labels_to_grid(self, label_channels: torch.Tensor) -> torch.Tensor:
        return label_channels

    def grid_to_logits(self, grid: torch.Tensor) -> torch.Tensor:
        return grid

    def region_to_grid(self, region01: torch.Tensor) -> torch.Tensor:
        return region01


class LatentSpace:
    """An autoencoder's latent grid with the mask in it. ``decode_fn``: how the decoder runs (any backend; default
    the eager fp32 decoder), ``z -> image [-1, 1]`` on the autoencoder's own latent scale."""

    latent = True

    def __init__(self, config, autoencoder=None, decode_fn=None, mask_codec=None):
        from .autoencoder import SCALE, load_autoencoder

        if not config.autoencoder:
            raise FastsynthError("not a latent model (its config names no autoencoder)")
        self.config = config
        self.scale = SCALE
        self.resolution = config.resolution
        self.grid = config.resolution // SCALE
        self.mask_repr = config.mask_repr
        self.grid_channels = config.data_channels - config.latent_channels
        self.state_channels = config.data_channels
        self.state_image_channels = config.latent_channels
        self.codec = mask_codec
        if self.mask_repr == "ae" and mask_codec is None:
            raise FastsynthError("a latent model with the ae mask representation needs its mask autoencoder "
                                 f"({MASK_CODEC_NAME} in the model folder)")
        self.ae = autoencoder or load_autoencoder(config.autoencoder, config.autoencoder_sha256,
                                                  channels=config.image_channels)
        self.decode_fn = decode_fn or self.ae.decode
        self.encode_fn = self.ae.encode  # generate may put it on its runtime (runtime.decoder.make_encoder_fn)
        self.mean = torch.tensor(config.latent_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(config.latent_std, dtype=torch.float32).view(1, -1, 1, 1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, C, H, W] in [-1, 1] -> normalised latents [N, 32, H/8, W/8]."""
        return (self.encode_fn(images.float()) - self.mean) / self.std

    def to_autoencoder_scale(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (the diffusion's) -> the autoencoder's own scale (what it decodes, a latent filter reads)."""
        return z.float().cpu() * self.std + self.mean

    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_fn(self.to_autoencoder_scale(z))

    def labels_to_grid(self, label_channels: torch.Tensor) -> torch.Tensor:
        return labels_to_grid(label_channels, self.mask_repr, self.scale, self.codec)

    def grid_to_logits(self, grid: torch.Tensor) -> torch.Tensor:
        return grid_to_logits(grid, self.mask_repr, self.scale, self.codec)

    def region_to_grid(self, region01: torch.Tensor) -> torch.Tensor:
        return grid_region(region01, self.scale)


def latent_config(config, autoencoder: str, sha256: str, mask_repr: str, mean, std):
    """``config`` (a ModelConfig of a latent preset) with the fields of its space: the autoencoder by name and hash,
    the mask representation, data channels = latent + mask grid, the latent's per-channel statistics."""
    from dataclasses import replace

    from .autoencoder import LATENT_CHANNELS

    return replace(config, autoencoder=autoencoder, autoencoder_sha256=sha256, latent_channels=LATENT_CHANNELS,
                   mask_repr=mask_repr, data_channels=LATENT_CHANNELS + mask_grid_channels(mask_repr,
                                                                                           _label_channels(config)),
                   latent_mean=tuple(round(float(v), 6) for v in mean),
                   latent_std=tuple(round(float(v), 6) for v in std))


def _label_channels(config) -> int:
    """K - 1 label channels of a model (1 for a binary mask)."""
    return len(config.class_names) - 1 if getattr(config, "class_names", None) else 1


def model_space(config, decode_fn=None, model_dir=None):
    """The space of a model: ``LatentSpace`` when its config names an autoencoder, else ``PixelSpace``.
    ``model_dir``: where an ``ae`` mask representation's weights are."""
    if getattr(config, "autoencoder", None):
        codec = None
        if config.mask_repr == "ae":
            from pathlib import Path

            codec = load_mask_codec(Path(model_dir) / MASK_CODEC_NAME, _label_channels(config))
        return LatentSpace(config, decode_fn=decode_fn, mask_codec=codec)
    return PixelSpace(config.resolution, config.data_channels - config.image_channels)
