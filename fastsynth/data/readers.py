"""Opening one image file and reading one binary mask, with a clear error naming the file: the lowest layer of
``fastsynth.data`` (``pairs`` and ``modality`` both build on it)."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError

# a mask is "binary-like" when at most this fraction of pixels lie far from both 0 and 255
MAX_GREY_FRACTION = 0.05
GREY_BAND = (32, 223)


def _open(path_or_img, what: str):
    from PIL import Image, UnidentifiedImageError

    if not isinstance(path_or_img, (str, os.PathLike)):
        img = path_or_img
        img.load()
        return img
    try:
        img = Image.open(path_or_img)
        img.load()  # forces decode: catches truncated files
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path_or_img}: unreadable or truncated {what} ({exc})") from None


def read_mask(path_or_img, name: str) -> np.ndarray:
    """A binary mask as uint8 {0, 255} [H, W]. Accepts 8-bit grey or RGB masks (binarised at 128) and {0, 1}."""
    img = _open(path_or_img, "mask")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise DataError(f"{name}: {img.mode} mask (16-bit or float); save it as 8-bit grey with values 0/255")
    if img.mode in ("RGBA", "LA", "PA"):
        raise DataError(f"{name}: mask has an alpha channel ({img.mode}); save it as 8-bit grey")
    if img.mode == "P":
        raise DataError(f"{name}: palette mask (mode P); save it as 8-bit grey with values 0/255")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "RGB"):
        raise DataError(f"{name}: unsupported mask mode {img.mode}; save it as 8-bit grey")
    a = np.asarray(img)
    if a.ndim == 3:
        a = a.max(axis=2)
    if a.max() <= 1:  # {0, 1} masks
        a = a * 255
    grey = np.count_nonzero((a > GREY_BAND[0]) & (a < GREY_BAND[1])) / a.size
    if grey > MAX_GREY_FRACTION:
        raise DataError(
            f"{name}: not a binary mask ({grey:.0%} of pixels are grey, between {GREY_BAND[0]} and "
            f"{GREY_BAND[1]}); expected black/white values"
        )
    return np.where(a >= 128, 255, 0).astype(np.uint8)
