"""The one place that converts between I/O arrays (uint8) and model tensors (float in [-1, 1]).

Masks at the boundary are uint8 {0, 255}; in the model they are one channel in {-1, +1}.
"""

from __future__ import annotations

import numpy as np
import torch


def image_to_tensor(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] or [N, 3, H, W] uint8 tensor -> float [-1, 1] (channels first)."""
    t = torch.as_tensor(rgb)
    if t.shape[-1] == 3 and t.ndim >= 3 and t.shape[-3] != 3:
        t = t.movedim(-1, -3)
    return t.float().div(127.5).sub(1.0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """float [N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3]."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def mask_to_channel(mask: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 {0, 255} (or any grey values, binarised at 128) -> float {-1, +1}."""
    t = torch.as_tensor(mask)
    return torch.where(t >= 128, 1.0, -1.0)


def channel_to_mask(channel: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """float mask channel -> uint8 {0, 255}, thresholded at ``threshold`` (0 = the midpoint in model space)."""
    return torch.where(channel > threshold, 255, 0).to(torch.uint8)


# --- any modality (issue 11) --------------------------------------------------------------------------------
# Labels in the model: the K - 1 foreground classes as one-hot channels in {-1, +1} (background = all -1).
# Why this and not K channels or analog bits: with K = 2 it *is* the original single mask channel, so binary
# models, their weights and every code path that treats "the mask channel" stay exactly as they were; decoding
# is an argmax over [threshold (the implicit background score), c_1, ..., c_{K-1}], which assigns every pixel
# exactly one class (never unlabelled, never two) and reduces to "channel > threshold" for K = 2; the known-value
# conditioning of from-masks / inpainting is exact (the one-hot of a label map decodes back to it bit for bit);
# and a channel per class keeps classes independent in the noise (analog bits save channels only for large K,
# but one noisy bit turns a class into an arbitrary other one; medical label maps have a handful of classes).
def images_to_tensor(raw: np.ndarray | torch.Tensor, modality) -> torch.Tensor:
    """Raw images [N, C, H, W] (uint8, or uint16 through the modality's window) -> float [-1, 1], clipped."""
    t = torch.as_tensor(np.asarray(raw) if not isinstance(raw, torch.Tensor) else raw)
    if modality.window is None:
        return t.float().div(127.5).sub(1.0)
    lo, hi = modality.lo_hi
    return ((t.double() - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0).float()


def tensor_to_raw(x: torch.Tensor, modality) -> np.ndarray:
    """float [N, C, H, W] in [-1, 1] -> raw images in the modality's depth: uint8 [N, H, W, 3] (RGB, as
    :func:`tensor_to_image`), uint8 [N, H, W] (grey) or uint16 [N, H, W] (16-bit grey, through the window)."""
    if modality.channels == 3:
        return tensor_to_image(x)
    x = x[:, 0].clamp(-1, 1)
    if modality.window is None:
        return ((x + 1) * 127.5).round().to(torch.uint8).contiguous().numpy()
    lo, hi = modality.lo_hi
    v = ((x.double() + 1) * 0.5 * (hi - lo) + lo).round().clamp(0, modality.max_value)
    return v.to(torch.int32).numpy().astype(np.uint16)


def labels_to_channels(labels: np.ndarray | torch.Tensor, modality) -> torch.Tensor:
    """uint8 labels [N, H, W] ({0, 255} binary, 0..K-1 label map) -> float {-1, +1} [N, K-1, H, W]."""
    t = torch.as_tensor(np.asarray(labels).astype(np.int64) if not isinstance(labels, torch.Tensor) else labels)
    t = t.long()
    if t.ndim == 4:
        t = t[:, 0]
    if modality.binary:
        return mask_to_channel(t)[:, None]
    ks = torch.arange(1, modality.num_classes, dtype=t.dtype).view(1, -1, 1, 1)
    return torch.where(t[:, None] == ks, 1.0, -1.0)


def pairs_to_x0(arr: np.ndarray | torch.Tensor, modality) -> torch.Tensor:
    """Loaded pairs [N, C + 1, H, W] (images in their depth, then the label) -> the model's x0 [N, C + K - 1, H, W]."""
    t = torch.as_tensor(np.asarray(arr) if not isinstance(arr, torch.Tensor) else arr)
    c = modality.channels
    return torch.cat([images_to_tensor(t[:, :c], modality), labels_to_channels(t[:, c].to(torch.uint8), modality)],
                     dim=1)


def foreground_channel(label_channels: torch.Tensor) -> torch.Tensor:
    """[N, K-1, H, W] label channels -> [N, 1, H, W]: +1 where any foreground class is on (the label map's
    foreground, e.g. for the inpainting region), else -1. For one channel, the channel itself."""
    if label_channels.shape[1] == 1:
        return label_channels
    return label_channels.amax(1, keepdim=True)


def raw_to_rgb8(raw: np.ndarray, modality) -> np.ndarray:
    """Images in their own depth ([N, H, W] grey, [N, H, W, 3] RGB, or [N, C, H, W]) -> uint8 [N, H, W, 3], the
    8-bit view the image metrics compare: RGB unchanged, grey replicated to three channels, 16-bit mapped through
    the model's intensity window (the model's own [-1, 1] range, written as 8 bits)."""
    a = np.asarray(raw)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 4:
        return np.ascontiguousarray(a.astype(np.uint8))
    if modality.window is not None:
        lo, hi = modality.lo_hi
        a = np.clip(np.rint((a.astype(np.float64) - lo) / (hi - lo) * 255.0), 0, 255)
    return np.ascontiguousarray(np.repeat(a.astype(np.uint8)[..., None], 3, axis=-1))


def pairs_to_view4(arr: np.ndarray, modality) -> np.ndarray:
    """Loaded pairs [N, C + 1, H, W] -> uint8 [N, 4, H, W]: the 8-bit RGB view (:func:`raw_to_rgb8`) + the label."""
    c = modality.channels
    rgb = raw_to_rgb8(arr[:, :c], modality).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(np.concatenate([rgb, arr[:, c:c + 1].astype(np.uint8)], axis=1))
