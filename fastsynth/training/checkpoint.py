"""Training-state folders that are complete or absent: written to ``NAME.tmp/`` and swapped in by renames.

Used by ``train`` and ``distill``. A kill between the two renames leaves ``NAME.old/``, which
:func:`latest_checkpoint` falls back to. Tensors go to safetensors; optimizer state to ``optimizer.pt``, read
back only with ``torch.load(weights_only=True)`` (no code execution) and only from our own checkpoints.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..utils import write_json_atomic


def save_checkpoint(ck: Path, tensors: dict[str, dict], blob: dict, state: dict) -> None:
    """``tensors``: file stem -> state dict (saved as STEM.safetensors); ``blob``: optimizer/scheduler state."""
    from safetensors.torch import save_file

    tmp, old = ck.with_name(ck.name + ".tmp"), ck.with_name(ck.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for stem, sd in tensors.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()}, str(tmp / f"{stem}.safetensors"))
    torch.save(blob, tmp / "optimizer.pt")
    write_json_atomic(tmp / "state.json", state)
    if ck.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(ck, old)
    os.replace(tmp, ck)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(ck: Path) -> Path | None:
    """The checkpoint folder to resume from (``.old`` if a kill landed between the two renames)."""
    for d in (ck, ck.with_name(ck.name + ".old")):
        if (d / "state.json").exists():
            return d
    return None


def load_blob(d: Path) -> dict:
    return torch.load(d / "optimizer.pt", map_location="cpu", weights_only=True)
