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
