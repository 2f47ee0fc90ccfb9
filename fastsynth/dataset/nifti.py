"""2D NIfTI files for ``generate --format nifti``: each pair as an image and a label file on the same grid, with the
pixel spacing of the model's training volumes (unit spacing for 2D sources).

The in-plane convention is the one ``fastsynth.data.volumes`` slices with: a written PNG-like array ``a[row, col]``
(anterior / superior up) is the NIfTI array ``flipud(a).T`` (x = column, y = row from the bottom), so a slice written
here reads back in the orientation it was cut from. RGB images carry their channels in the 5th dimension (NIfTI's
vector convention, intent ``vector``); labels are class indices 0..K-1 (a binary mask 0/1).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..errors import DataError, require


def _nib():
    return require("nibabel", "medical", "Writing and reading NIfTI pairs (--format nifti)")


def encode(a: np.ndarray, spacing=(1.0, 1.0), label: bool = False) -> bytes:
    """gzip-compressed NIfTI-1 bytes of one 2D image ([H, W] or [H, W, 3]) or label map ([H, W])."""
    nib = _nib()
    row_mm, col_mm = (float(s) for s in spacing)
    data = np.flipud(a).swapaxes(0, 1)  # [W, H(, 3)]: x = column, y = row counted from the bottom
    if data.ndim == 3:  # RGB: x, y, z = 1, t = 1, the vector's 3 components
        data = data[:, :, None, None, :]
    else:
        data = data[:, :, None]
    img = nib.Nifti1Image(np.ascontiguousarray(data), np.diag([col_mm, row_mm, 1.0, 1.0]))
    if a.ndim == 3:
        img.header.set_intent("vector")
    img.header.set_xyzt_units("mm")
    if label:
        img.header.set_intent("label")
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def decode(path: str | Path) -> np.ndarray:
    """The [H, W] or [H, W, 3] array of a file written by ``encode``."""
    nib = _nib()
    try:
        data = np.asarray(nib.load(str(path)).dataobj)
    except Exception as exc:
        raise DataError(f"{path}: unreadable NIfTI file ({type(exc).__name__}: {exc})") from None
    if data.ndim == 5:
        data = data[:, :, 0, 0, :]
    elif data.ndim == 3:
        data = data[:, :, 0]
    return np.ascontiguousarray(np.flipud(data.swapaxes(0, 1)))
