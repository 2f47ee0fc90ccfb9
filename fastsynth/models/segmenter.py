"""A segmenter of the downstream judge (segmentation_models_pytorch): its config, the model, inference and the
folder it is saved in (``config.json`` + ``model.safetensors`` + ``fastsynth.json`` + ``README.md``). Training and the
benchmark protocols are in ``metrics.downstream``; the label-agreement filter (``runtime.agreement``) and shipped
models (``models.bundle``) need only this part."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FastsynthError

ARCHS = {"unetplusplus": "UnetPlusPlus", "unet": "Unet", "fpn": "FPN", "deeplabv3plus": "DeepLabV3Plus"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_NO_IMAGENET: set[str] = set()


@dataclass(frozen=True)
class SegConfig:
    # the judge's default: a U-Net with a resnet18 encoder of depth 4 (64x64 inputs need no 2x2 bottleneck), about 3x
    # cheaper per step than the paper's UNet++/resnet34, so every protocol runs over several seeds on a 2-core CPU;
    # the paper's segmenter stays one flag away (--seg-arch unetplusplus --seg-encoder resnet34 --seg-encoder-depth 5)
    arch: str = "unet"
    encoder: str = "resnet18"
    encoder_weights: str | None = "auto"  # auto: ImageNet if loadable (offline cache), else from scratch
    encoder_depth: int = 4
    decoder_channels: tuple | None = (128, 64, 32, 16)  # None: smp's default for the architecture
    resolution: int = 64
    # 300 steps x 16 images (~5 passes over 900 real images) per protocol and seed
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    alpha: float = 0.5
    hflip: bool = True
    vflip: bool = True
    threshold: float = 0.5
    # label maps (issue 11): the K class names; None: a binary mask (one sigmoid channel). With K classes the
    # segmenter has K softmax outputs, is trained with cross-entropy + soft Dice over the foreground classes,
    # predicts the argmax, and is scored per class (Dice/IoU of each class >= 1) and by their mean
    class_names: tuple | None = None
    # what the segmenter reads: "image" (ImageNet-normalised pixels [B, 3, H, W]) or "latent" (an autoencoder's
    # latents at its own scale [B, 32, H/8, W/8]: it scores a latent model's pairs before the decoder runs, so only
    # the kept ones are decoded; its logits are upsampled to ``resolution`` and scored there)
    input: str = "image"
    autoencoder: str | None = None
    autoencoder_sha256: str | None = None


def num_classes(cfg: SegConfig) -> int:
    return 2 if not cfg.class_names else len(cfg.class_names)


def seg_config_from_dict(d: dict) -> SegConfig:
    from ..config import from_dict

    return from_dict(SegConfig, d, where="segmenter config")


def _smp():
    from ..errors import require

    return require("segmentation_models_pytorch", "eval", "the downstream segmentation benchmark")


def unused_stages(cfg: SegConfig) -> tuple[str, ...]:
    """The encoder stages a ResNet/ResNeXt encoder of depth < 5 builds but never runs (depth 4: ``layer4``, 8.4 M of a
    resnet18 U-Net's 12 M parameters): replaced by an identity, so they are neither stored nor shipped."""
    if not cfg.encoder.startswith(("resnet", "resnext")):
        return ()
    return tuple(f"layer{i}" for i in range(max(cfg.encoder_depth, 1), 5))


def build_model(cfg: SegConfig):
    """The smp model for ``cfg`` (weights as resolved: returns (model, encoder_weights actually used))."""
    import torch

    model, weights = _build_model(cfg)
    for name in unused_stages(cfg):  # after construction: the kept weights' initialisation is unchanged
        setattr(model.encoder, name, torch.nn.Identity())
    return model, weights


def _build_model(cfg: SegConfig):
    smp = _smp()
    arch = cfg.arch.lower().replace("-", "").replace("_", "").replace("+", "plus")
    if arch not in ARCHS:
        raise FastsynthError(f"--seg-arch {cfg.arch!r}: unknown; choose one of {', '.join(ARCHS)}")
    if cfg.input not in ("image", "latent"):
        raise FastsynthError(f"segmenter input {cfg.input!r}: unknown (image or latent)")
    if cfg.input == "latent":
        from .autoencoder import LATENT_CHANNELS
    kw = dict(encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth,
              in_channels=LATENT_CHANNELS if cfg.input == "latent" else 3,
              classes=1 if num_classes(cfg) == 2 else num_classes(cfg))
    if cfg.decoder_channels is not None:
        kw["decoder_channels"] = list(cfg.decoder_channels) if arch != "fpn" else None
        if arch == "fpn":
            kw.pop("decoder_channels")
    if arch == "deeplabv3plus" and "decoder_channels" in kw:
        kw["decoder_channels"] = kw["decoder_channels"][0]
    if arch == "fpn" and cfg.encoder_depth != 5:
        raise FastsynthError("FPN needs --seg-encoder-depth 5 (its head upsamples by a fixed factor)")
    cls = getattr(smp, ARCHS[arch])
    if cfg.encoder not in smp.encoders.get_encoder_names() and not cfg.encoder.startswith("tu-"):
        raise FastsynthError(f"--seg-encoder {cfg.encoder!r}: unknown smp encoder; e.g. resnet18, resnet34, "
                             "efficientnet-b0, mobilenet_v2 or a timm encoder as tu-NAME")
    wanted = cfg.encoder_weights
    if wanted == "auto":
        if cfg.encoder not in _NO_IMAGENET:
            try:
                return cls(encoder_weights="imagenet", **kw), "imagenet"
            except Exception:  # offline, not cached, or no ImageNet weights for this encoder
                _NO_IMAGENET.add(cfg.encoder)  # ask once per process (offline retries cost ~20 s)
        return cls(encoder_weights=None, **kw), None
    try:
        return cls(encoder_weights=wanted, **kw), wanted
    except Exception as exc:
        raise FastsynthError(f"could not build {cfg.arch} with encoder {cfg.encoder} and weights {wanted!r} "
                             f"({exc}); use --seg-encoder-weights none to train from scratch") from None


def dice_iou(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU of boolean masks [N, H, W] from tp/fp/fn (both empty -> 1)."""
    p, t = pred.reshape(len(pred), -1).astype(bool), target.reshape(len(target), -1).astype(bool)
    tp = (p & t).sum(1).astype(np.float64)
    fp = (p & ~t).sum(1).astype(np.float64)
    fn = (~p & t).sum(1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(tp + fp + fn == 0, 1.0, 2 * tp / (2 * tp + fp + fn))
        iou = np.where(tp + fp + fn == 0, 1.0, tp / (tp + fp + fn))
    return dice, iou


def _to_input(rgb_u8: np.ndarray):
    """uint8 [B, 3, H, W] -> ImageNet-normalised float tensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb_u8)).float() / 255.0
    return (x - torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1)


def predict(model, images_u8: np.ndarray, threshold: float = 0.5, batch_size: int = 32, device="cpu") -> np.ndarray:
    """Binary predictions [N, H, W] for uint8 images [N, 3, H, W]. ``model`` is a segmenter module (run eagerly
    on ``device``) or a backend function ``logits = f(image)`` from :func:`fastsynth.runtime.make_segmenter_fn`."""
    import torch

    if isinstance(model, torch.nn.Module):
        model.eval()
        net = model

        def fn(x):
            return net(x.to(device))
    else:
        fn = model
    out = []
    with torch.inference_mode():
        for s in range(0, len(images_u8), batch_size):
            logits = fn(_to_input(images_u8[s:s + batch_size]))
            if logits.shape[1] > 1:  # K classes: the label map (argmax)
                out.append(logits.float().argmax(1).to(torch.uint8).cpu().numpy())
            else:
                out.append((torch.sigmoid(logits[:, 0].float()) > threshold).cpu().numpy())
    return np.concatenate(out)


def binary_loss(logits, y):
    """BCE + soft Dice (per image, then the mean) of one-channel logits against {0, 1} targets [B, 1, H, W]: how
    binary segmenters train (the judge's and the latent filter)."""
    import torch
    import torch.nn.functional as F

    prob = torch.sigmoid(logits)
    inter = (prob * y).sum((1, 2, 3))
    soft_dice = 1 - (2 * inter + 1) / (prob.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, y) + soft_dice.mean()


def mask_at(masks_u8, size: int):
    """uint8 masks [N, H, W] {0, 255} (array or tensor) -> bool tensor [N, 1, size, size]: area-resized, >= half. How
    a latent filter's targets are made in training and in scoring."""
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(np.ascontiguousarray(masks_u8))[:, None].float() / 255
    return F.interpolate(m, size=(size, size), mode="area") >= 0.5


def predict_latent(model, z, size: int, threshold: float = 0.5, batch_size: int = 64) -> np.ndarray:
    """Binary predictions [N, size, size] of a latent-input segmenter (a module, run eagerly) for latents
    [N, 32, h, w] at the autoencoder's own scale: logits upsampled bilinearly to ``size``, then thresholded."""
    import torch
    import torch.nn.functional as F

    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(z), batch_size):
            lg = F.interpolate(model(z[s:s + batch_size].float()), size=(size, size), mode="bilinear",
                               align_corners=False)
            out.append((torch.sigmoid(lg[:, 0]) > threshold).cpu().numpy())
    return np.concatenate(out)


# --- save / load -------------------------------------------------------------------------------------------
def _cfg_dict(cfg: SegConfig) -> dict:
    from ..config import to_dict

    d = to_dict(cfg)
    if d.get("class_names") is None:  # binary: the dict (and so the cache key) of before label maps existed
        d.pop("class_names", None)
    if d.get("input") == "image":  # the same for segmenters of images (all of them before latent input existed)
        for k in ("input", "autoencoder", "autoencoder_sha256"):
            d.pop(k, None)
    return d


def save_segmenter(model, cfg: SegConfig, out_dir: str | os.PathLike, meta: dict | None = None, dtype=None) -> Path:
    """config.json + model.safetensors + fastsynth.json + README.md, each written atomically. ``dtype``: store the
    floating-point weights in it (float16 for a segmenter shipped with a model; loading casts them back)."""
    from safetensors.torch import save_file

    from .. import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "fastsynth": "segmenter"})
    os.replace(tmp, out / WEIGHTS_NAME)
    meta = {"fastsynth_version": __version__, "kind": "segmenter", **(meta or {})}
    for name, obj in ((CONFIG_NAME, _cfg_dict(cfg)), ("fastsynth.json", meta)):
        t = out / (name + ".tmp")
        t.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
        os.replace(t, out / name)
    (out / "README.md").write_text(_segmenter_card(cfg, meta))
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _segmenter_card(cfg: SegConfig, meta: dict) -> str:
    rows = "\n".join(f"| {t} | {s['dice']:.4f} | {s['iou']:.4f} | {s['n']} |"
                     for t, s in meta.get("scores", {}).items())
    reads = "" if cfg.input == "image" else (
        f"\nIt reads `{cfg.autoencoder}` latents (the autoencoder's own scale, 1/8 of the resolution each way), not "
        "pixels: a latent model's pairs are scored before the decoder runs, and only the kept ones are decoded.")
    return f"""---
library_name: segmentation-models-pytorch
tags:
- fastsynth
- segmentation
- polyp
---
# Polyp segmenter ({cfg.arch}, {cfg.encoder}) trained by fastsynth

Protocol: `{meta.get('protocol', '?')}`; {cfg.steps} steps, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed},
resolution {cfg.resolution}, encoder weights: {meta.get('training', {}).get('encoder_weights_used')}.{reads}

| test set | Dice | IoU | images |
|---|---|---|---|
{rows}

Load with `fastsynth.metrics.downstream.load_segmenter(path)`.
"""


def load_segmenter(path: str | os.PathLike, device: str = "cpu"):
    """(model in eval mode, SegConfig, metadata) from a folder written by :func:`save_segmenter`."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / CONFIG_NAME).is_file() or not (p / WEIGHTS_NAME).is_file():
        raise FastsynthError(f"{p}: not a segmenter folder (expected {CONFIG_NAME} and {WEIGHTS_NAME})")
    cfg = seg_config_from_dict(json.loads((p / CONFIG_NAME).read_text()))
    meta = json.loads((p / "fastsynth.json").read_text()) if (p / "fastsynth.json").is_file() else {}
    model, _ = build_model(dataclasses.replace(cfg, encoder_weights=None))
    unused = tuple(f"encoder.{name}." for name in unused_stages(cfg))  # stored by older versions, never run
    state = {k: v for k, v in load_file(str(p / WEIGHTS_NAME)).items() if not k.startswith(unused)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FastsynthError(f"{p / WEIGHTS_NAME}: weights do not match {CONFIG_NAME} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), cfg, meta
