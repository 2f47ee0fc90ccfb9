"""The joint image+mask denoiser.

A diffusers ``UNet2DModel`` predicts v (or the noise, per ``prediction_type``) of the 4-channel state x_t (RGB + mask channel). Its input is
``[x_t | known * indicator | indicator]``: the known values of the conditioning and a per-channel,
per-pixel indicator of which values are known. Unconditional pairs have an all-zero indicator; mask->image
has the mask channel known; inpainting has all four channels known outside the region to regenerate.

Saved as a folder: ``config.json`` (the ModelConfig), ``model.safetensors`` (weights), ``fastsynth.json``
(provenance: training data, steps, split) and ``README.md`` (a model card). Never pickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

from ..config import ModelConfig, from_dict, to_dict
from ..errors import FastsynthError
from ..utils import public_json, write_json_atomic

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "bundled"
# names accepted by --model for the models shipped in the package: the default (polyps, RGB), its progressively
# distilled 4-step student (fastsynth distill; benchmarks/results/distill_quality_cpu.json), and a greyscale
# fetal-head ultrasound model (HC18; benchmarks/results/judge_ultrasound_cpu.json), and a 16-bit MRI model with
# 3-class label maps (MSD hippocampus, CC BY-SA 4.0; benchmarks/results/judge_hippocampus_*_cpu.json)
BUNDLED_MODELS = {"bundled": BUNDLED_MODEL_DIR, "default": BUNDLED_MODEL_DIR,
                  "bundled-fast": BUNDLED_MODEL_DIR.with_name("bundled_fast"),
                  "bundled-ultrasound": BUNDLED_MODEL_DIR.with_name("bundled_ultrasound"),
                  "bundled-hippocampus": BUNDLED_MODEL_DIR.with_name("bundled_hippocampus"),
                  "bundled-256": BUNDLED_MODEL_DIR.with_name("bundled_256")}
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
META_NAME = "fastsynth.json"


def build_unet(cfg: ModelConfig):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=cfg.grid // cfg.patch_size,
        in_channels=cfg.in_channels * cfg.patch_size ** 2,
        out_channels=cfg.data_channels * cfg.patch_size ** 2,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
        dropout=cfg.dropout,
        num_class_embeds=cfg.num_class_embeds,
    )


class Denoiser(nn.Module):
    """v_theta (or eps_theta) of (x_t, t | known, indicator). Plain tensors in and out (compile/export friendly)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.unet = build_unet(cfg)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_t [N, 4, H, W]; t [N] timesteps; cond [N, 8, H, W] = known*indicator | indicator."""
        h = torch.cat([x_t, cond], dim=1)
        p = self.config.patch_size
        if p > 1:  # "patchify" (Hoogeboom et al. 2023, simple diffusion): the UNet runs at H/p
            h = F.pixel_unshuffle(h, p)
        out = self.unet(h, t, return_dict=False)[0]
        if p > 1:
            out = F.pixel_shuffle(out, p)
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_model(model: Denoiser, out_dir: str | os.PathLike, meta: dict | None = None,
               dtype: torch.dtype | None = None, card: str | None = None) -> Path:
    """Write config.json + model.safetensors (+ fastsynth.json, README.md) atomically into out_dir.

    A model folder is what people share: ``meta`` is written as its public copy (``public_json``: local paths
    reduced to their last component, no user name), so no ``../`` or absolute path reaches a fastsynth.json."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.unet.state_dict().items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "fastsynth": "denoiser"})
    os.replace(tmp, out / WEIGHTS_NAME)
    write_json_atomic(out / CONFIG_NAME, to_dict(model.config))
    if meta is not None:
        write_json_atomic(out / META_NAME, public_json(meta))
    if card is not None:
        (out / "README.md").write_text(card)
    return out


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """None or 'bundled' -> the model shipped in the package ('bundled-fast': its distilled 4-step student,
    'bundled-ultrasound': the greyscale ultrasound model, 'bundled-hippocampus': the 16-bit MRI
    label-map model);
    a run dir -> its exported model/; else the folder."""
    if model is None or str(model) in BUNDLED_MODELS:
        p = BUNDLED_MODELS[str(model or "bundled")]
        if not (p / WEIGHTS_NAME).exists():
            raise FastsynthError(f"the bundled model is missing from the installation ({p}); reinstall fastsynth")
        return p
    p = Path(model)
    if not p.exists():
        raise FastsynthError(f"--model {model}: no such folder (give a model folder, a training run folder, "
                             "or leave it out to use the bundled model)")
    if (p / "model" / WEIGHTS_NAME).exists() and not (p / WEIGHTS_NAME).exists():
        return p / "model"  # a training run dir: its exported EMA model
    if not (p / WEIGHTS_NAME).exists() or not (p / CONFIG_NAME).exists():
        raise FastsynthError(f"--model {model}: expected {CONFIG_NAME} and {WEIGHTS_NAME} in it")
    return p


def read_model_meta(d: Path) -> dict:
    """The provenance metadata (fastsynth.json) of the model folder ``d``: {} (plus its path) where there is none."""
    meta = {}
    if (d / META_NAME).exists():
        try:
            meta = json.loads((d / META_NAME).read_text())
        except json.JSONDecodeError as exc:
            raise FastsynthError(f"{d / META_NAME}: invalid JSON ({exc})") from None
    meta.setdefault("path", str(d))
    return meta


def load_model(model: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> tuple[Denoiser, dict]:
    """Load a saved Denoiser (safetensors only). Returns (model in eval mode, provenance metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = resolve_model_dir(model)
    try:
        cfg = from_dict(ModelConfig, json.loads((d / CONFIG_NAME).read_text()), where=str(d / CONFIG_NAME))
    except json.JSONDecodeError as exc:
        raise FastsynthError(f"{d / CONFIG_NAME}: invalid JSON ({exc})") from None
    net = Denoiser(cfg)
    try:
        state = load_file(str(d / WEIGHTS_NAME))
    except (SafetensorError, OSError) as exc:
        raise FastsynthError(f"{d / WEIGHTS_NAME}: unreadable safetensors file ({exc})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = net.unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FastsynthError(f"{d / WEIGHTS_NAME}: weights do not match {CONFIG_NAME} "
                             f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)")
    meta = read_model_meta(d)
    net.eval().requires_grad_(False)
    return net.to(device=device, dtype=dtype), meta
