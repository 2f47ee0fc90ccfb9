"""What the images and labels of a dataset are: channels, bit depth, intensity window, classes.

A :class:`Modality` describes the data a model was trained on and travels with it (in ``ModelConfig``, so a
distilled or bundled copy keeps it). The defaults are the original fastsynth data: 8-bit RGB images with one
binary mask, so a model folder written before these fields existed loads unchanged.

- Images: 1 channel (grey) or 3 (RGB); 8 bit, or 16 bit (grey only: Pillow reads no 16-bit RGB). 8-bit values
  map linearly from [0, 255] to [-1, 1] (as always); 16-bit values map from an intensity window (low, high),
  computed once on the training split (0.5 / 99.5 percentiles) and stored with the model, so generation writes
  images back in the original depth and range.
- Labels: a binary mask (K = 2; uint8 {0, 255} at I/O, as always), or a label map with K >= 3 classes (uint8
  values 0..K-1; class 0 is the background). See :mod:`fastsynth.data.codec` for the model's channels.

:func:`detect_modality` finds all of this from the files and checks that the dataset is of one kind: a folder
mixing bit depths or channel counts, a label value >= K, or an RGB-coloured mask without a palette is a
:class:`DataError` naming the files; a class that never occurs is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import DataError

# an image's kind from its Pillow mode
GREY8_MODES = ("L", "1")
GREY16_MODES = ("I;16", "I;16B", "I;16L", "I")
RGB8_MODES = ("RGB", "CMYK", "YCbCr")
WINDOW_PERCENTILES = (0.5, 99.5)
MAX_CLASSES = 64  # a mask whose largest value is >= this is read as a binary mask (0 / 255, JPEG noise and all)
# an RGB mask is "coloured" when a second colour covers at least this fraction of its foreground
COLOURED_FRACTION = 0.05


@dataclass(frozen=True)
class Modality:
    channels: int = 3
    bits: int = 8
    window: tuple | None = None  # (low, high) raw values -> [-1, 1]; None: [0, 255]
    class_names: tuple | None = None  # None: binary ("background", "foreground")

    @property
    def num_classes(self) -> int:
        return 2 if self.class_names is None else len(self.class_names)

    @property
    def binary(self) -> bool:
        return self.num_classes == 2

    @property
    def label_channels(self) -> int:
        """K - 1 one-hot channels of the foreground classes (one channel for a binary mask)."""
        return self.num_classes - 1

    @property
    def data_channels(self) -> int:
        return self.channels + self.label_channels

    @property
    def names(self) -> tuple:
        return self.class_names or ("background", "foreground")

    @property
    def dtype(self):
        return np.uint16 if self.bits == 16 else np.uint8

    @property
    def max_value(self) -> int:
        return 65535 if self.bits == 16 else 255

    @property
    def lo_hi(self) -> tuple[float, float]:
        if self.window is not None:
            return float(self.window[0]), float(self.window[1])
        return 0.0, 255.0

    @property
    def image_mode(self) -> str:
        """The Pillow mode images are written in."""
        return "RGB" if self.channels == 3 else ("I;16" if self.bits == 16 else "L")

    @property
    def is_default(self) -> bool:
        return self == Modality()

    def describe(self) -> str:
        img = {"RGB": "8-bit RGB", "L": "8-bit grey", "I;16": "16-bit grey"}[self.image_mode]
        if self.window is not None:
            img += f" (window {self.window[0]:g}..{self.window[1]:g})"
        lab = "binary mask" if self.binary else f"{self.num_classes}-class label map ({', '.join(self.names)})"
        return f"{img}, {lab}"

    def to_dict(self) -> dict:
        return {"channels": self.channels, "bits": self.bits,
                "window": list(self.window) if self.window is not None else None,
                "class_names": list(self.class_names) if self.class_names is not None else None,
                "image_mode": self.image_mode}

    # --- ModelConfig <-> Modality -----------------------------------------------------------------------
    def model_fields(self) -> dict:
        return {"image_channels": self.channels, "image_bits": self.bits,
                "intensity_window": tuple(self.window) if self.window is not None else None,
                "class_names": tuple(self.class_names) if self.class_names is not None else None,
                "data_channels": self.data_channels}


def modality_from_config(cfg) -> Modality:
    """The Modality of a ModelConfig (fields absent from an old config.json take the RGB 8-bit binary defaults)."""
    m = Modality(channels=int(getattr(cfg, "image_channels", 3)), bits=int(getattr(cfg, "image_bits", 8)),
                 window=tuple(cfg.intensity_window) if getattr(cfg, "intensity_window", None) else None,
                 class_names=tuple(cfg.class_names) if getattr(cfg, "class_names", None) else None)
    validate(m)
    if getattr(cfg, "autoencoder", None):  # a latent model: the latent's channels + the mask grid's
        from ..config import mask_grid_channels

        if cfg.data_channels != cfg.latent_channels + mask_grid_channels(cfg.mask_repr, m.label_channels):
            from ..errors import FastsynthError

            raise FastsynthError(f"model config: data_channels {cfg.data_channels} does not match the latent's "
                                 f"{cfg.latent_channels} + the {cfg.mask_repr} mask grid of {m.label_channels} label "
                                 "channel(s)")
        return m
    if m.data_channels != cfg.data_channels:
        from ..errors import FastsynthError

        raise FastsynthError(f"model config: data_channels {cfg.data_channels} does not match "
                             f"{m.channels} image channel(s) + {m.label_channels} label channel(s)")
    return m


def modality_from_dict(d: dict | None) -> Modality:
    """From :meth:`Modality.to_dict` (a dataset manifest); None / {}: the default."""
    if not d:
        return Modality()
    return Modality(channels=int(d.get("channels", 3)), bits=int(d.get("bits", 8)),
                    window=tuple(d["window"]) if d.get("window") else None,
                    class_names=tuple(d["class_names"]) if d.get("class_names") else None)


def validate(m: Modality) -> None:
    from ..errors import FastsynthError

    if m.channels not in (1, 3):
        raise FastsynthError(f"image channels {m.channels}: must be 1 (grey) or 3 (RGB)")
    if m.bits not in (8, 16):
        raise FastsynthError(f"image bit depth {m.bits}: must be 8 or 16")
    if m.bits == 16 and m.channels != 1:
        raise FastsynthError("16-bit images must be greyscale (one channel)")
    if m.window is not None and not (len(m.window) == 2 and float(m.window[1]) > float(m.window[0])):
        raise FastsynthError(f"intensity window {m.window}: expected (low, high) with high > low")
    if m.class_names is not None:
        if len(m.class_names) < 2:
            raise FastsynthError(f"classes {list(m.class_names)}: give at least two names (background first)")
        if len(set(m.class_names)) != len(m.class_names) or any(not str(n).strip() for n in m.class_names):
            raise FastsynthError(f"classes {list(m.class_names)}: names must be distinct and non-empty")
        if len(m.class_names) > MAX_CLASSES:
            raise FastsynthError(f"{len(m.class_names)} classes: at most {MAX_CLASSES} are supported")


def parse_classes(spec: str | Iterable[str] | None) -> tuple | None:
    """``--classes background,blood-pool,myocardium`` -> a tuple of names (None when not given)."""
    if spec is None or spec == "" or spec == ():
        return None
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    m = Modality(class_names=tuple(names))
    validate(m)
    return m.class_names


# --- reading one file's kind --------------------------------------------------------------------------------
def image_kind(img, name: str) -> str:
    """'L' (8-bit grey), 'I;16' (16-bit grey) or 'RGB' (8-bit colour) from a Pillow image's mode; bad modes
    are a DataError saying how to fix the file."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        raise DataError(f"{name}: image has an alpha channel ({mode}); save it as RGB or grey without transparency")
    if mode == "P":
        raise DataError(f"{name}: palette image (mode P); save it as RGB or grey")
    if mode == "F":
        raise DataError(f"{name}: floating-point image (mode F); save it as 8- or 16-bit integers")
    if mode in GREY8_MODES:
        return "L"
    if mode in GREY16_MODES:
        return "I;16"
    if mode in RGB8_MODES:
        return "RGB"
    raise DataError(f"{name}: unsupported image mode {mode}; save it as 8-bit RGB/grey or 16-bit grey")


KIND_WORDS = {"L": "8-bit grey (L)", "I;16": "16-bit grey (I;16)", "RGB": "8-bit RGB"}


def read_image_raw(path_or_img, name: str, kind: str) -> np.ndarray:
    """An image as its own kind: uint8 [H, W] (L), uint16 [H, W] (I;16) or uint8 [H, W, 3] (RGB)."""
    from .readers import _open

    img = _open(path_or_img, "image")
    k = image_kind(img, name)
    if k != kind:
        raise DataError(f"{name}: {KIND_WORDS[k]} image, but this dataset / model is {KIND_WORDS[kind]}; "
                        "convert it (all images of a dataset must have one channel count and bit depth)")
    if kind == "L":
        return np.asarray(img.convert("L"))
    if kind == "RGB":
        return np.asarray(img.convert("RGB"))
    a = np.asarray(img)
    if a.dtype.kind == "i" or a.dtype.itemsize > 2:  # mode I (32-bit TIFF): must hold 16-bit values
        if a.min() < 0 or a.max() > 65535:
            raise DataError(f"{name}: 32-bit integer image with values outside 0..65535; save it as 16-bit")
    return a.astype(np.uint16)


def _label_values(path_or_img, name: str) -> tuple[str, np.ndarray]:
    """('binary', mask {0,255}) for a black/white mask (today's reader, JPEG noise and RGB included),
    ('labels', uint8 values) for a label map (grey, palette or 16-bit PNG/TIFF with values < MAX_CLASSES), or
    ('small', uint8 values in {0, 1}) for a file that holds only 0 and 1: a 0/1 binary mask, or a slice of a label
    map with only the background and class 1. Which one is decided per dataset, never per file."""
    from .readers import _open, read_mask

    img = _open(path_or_img, "mask")
    if img.mode in ("RGBA", "LA", "PA"):
        raise DataError(f"{name}: mask has an alpha channel ({img.mode}); save it as 8-bit grey")
    if img.mode == "P":
        return "labels", np.asarray(img).astype(np.uint8)
    if img.mode == "F":
        raise DataError(f"{name}: floating-point mask; save it as 8-bit grey (label values 0..K-1 or 0/255)")
    if img.mode == "RGB":
        a = np.asarray(img)
        if not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])):
            _check_not_coloured(a, name)
            return "binary", read_mask(img, name)
        img = img.convert("L")
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[..., 0]
    mx = int(a.max()) if a.size else 0
    if mx >= MAX_CLASSES:
        if img.mode not in ("L", "1"):
            raise DataError(f"{name}: {img.mode} mask with values up to {mx}; a label map holds 0..K-1")
        return "binary", read_mask(img, name)
    if mx <= 1:
        return "small", a.astype(np.uint8)
    return "labels", a.astype(np.uint8)


def _check_not_coloured(rgb: np.ndarray, name: str) -> None:
    fg = rgb.max(axis=2) >= 128
    if not fg.any():
        return
    pattern = ((rgb[fg] >= 128) * np.array([1, 2, 4])).sum(1)
    counts = np.bincount(pattern, minlength=8)
    counts.sort()
    if counts[-2] >= COLOURED_FRACTION * fg.sum():
        raise DataError(f"{name}: RGB-coloured mask (several colours) without a palette; save it as an 8-bit "
                        "label map with values 0..K-1 (mode L, or P with a palette), or a black/white binary mask")


def read_label(path_or_img, name: str, m: Modality) -> np.ndarray:
    """The label of one file as uint8 [H, W]: {0, 255} for a binary modality, 0..K-1 for a label map."""
    kind, a = _label_values(path_or_img, name)
    if kind == "small":  # only 0 and 1: what they mean is the dataset's kind
        return a * 255 if m.binary else a
    if m.binary:
        if kind == "labels":
            raise DataError(f"{name}: label map with values up to {int(a.max())}, but this model / dataset has "
                            "binary masks (values 0/255 or 0/1)")
        return a
    if kind == "binary":
        raise DataError(f"{name}: label value 255 >= {m.num_classes} (classes {', '.join(m.names)}); "
                        f"a label map holds values 0..{m.num_classes - 1}")
    bad = int(a.max())
    if bad >= m.num_classes:
        raise DataError(f"{name}: label value {bad} >= {m.num_classes} (classes {', '.join(m.names)}); "
                        f"a label map holds values 0..{m.num_classes - 1} (give --classes with more names?)")
    return a


# --- a whole dataset ----------------------------------------------------------------------------------------
def _pair_kinds(src, stem: str):
    """((image kind, image name), (label kind, label values, mask name)) of one pair; the image's header only."""
    img_ref, mask_ref = src.items[stem]
    if src.kind == "hf":
        try:
            row = src._hf[img_ref]
        except Exception as exc:  # datasets decodes on access: corrupt bytes surface here
            raise DataError(f"{src.root}[{stem}]: unreadable row ({exc})") from None
        iname, mname, img, mk = f"{src.root}[{stem}]", f"{src.root}[{stem}] mask", row["image"], row["mask"]
    else:
        from PIL import Image, UnidentifiedImageError

        iname, mname, mk = str(img_ref), str(mask_ref), mask_ref
        try:
            img = Image.open(img_ref)  # header only: the mode
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{img_ref}: unreadable or truncated image ({exc})") from None
    ikind = image_kind(img, iname)
    kind, a = _label_values(mk, mname)
    return (ikind, iname), (kind, a, mname)


def detect_modality(src, stems: Iterable[str] | None = None, class_names: tuple | None = None,
                    progress=None, skip_bad: bool = False) -> tuple[Modality, list[str]]:
    """(Modality without window, warnings) of the pairs ``stems`` of a PairSource, checking that all images have
    one kind and all labels one kind. ``class_names``: given names (``--classes``), else K is found.
    ``skip_bad``: a pair whose files are unreadable is left out here (loading skips and lists it)."""
    stems = list(src.stems if stems is None else stems)
    first_img: dict[str, str] = {}
    first_lab: dict[str, str] = {}
    seen = np.zeros(256, bool)
    max_val, max_file = -1, ""
    it = progress(stems) if progress else stems
    for stem in it:
        try:
            (ikind, iname), (kind, a, mname) = _pair_kinds(src, stem)
        except DataError:
            if skip_bad:
                continue
            raise
        first_img.setdefault(ikind, iname)
        first_lab.setdefault(kind, mname)
        if kind in ("labels", "small"):
            seen[np.unique(a)] = True
            if int(a.max()) > max_val:
                max_val, max_file = int(a.max()), mname
    if not first_img:
        raise DataError(f"{src.root}: no readable pairs")
    if len(first_img) > 1:
        desc = "; ".join(f"{f} is {KIND_WORDS[k]}" for k, f in first_img.items())
        raise DataError(f"{src.root}: images of different kinds ({desc}); convert them to one channel count and "
                        "bit depth")
    # files holding only 0 and 1 take the kind of the rest (a slice with a subset of the classes is a normal slice);
    # alone they are 0/1 binary masks, unless --classes names more than two classes
    small = first_lab.pop("small", None)
    if not first_lab:
        first_lab["labels" if class_names is not None and len(class_names) > 2 else "binary"] = small
    if len(first_lab) > 1:
        raise DataError(f"{src.root}: masks of different kinds ({first_lab['binary']} is a binary 0/255 mask, "
                        f"{first_lab['labels']} a label map with small values 0..K-1); use one kind")
    kind = next(iter(first_img))
    channels, bits = (3, 8) if kind == "RGB" else (1, 16 if kind == "I;16" else 8)
    warnings: list[str] = []
    is_labels = "labels" in first_lab
    if class_names is None:
        names = None
        if is_labels:
            names = ("background",) + tuple(f"class{k}" for k in range(1, max_val + 1))
    else:
        names = tuple(class_names)
        if len(names) == 2:
            if is_labels:
                raise DataError(f"{max_file}: label value {max_val} >= 2 (classes {', '.join(names)})")
        elif not is_labels:
            raise DataError(f"{first_lab['binary']}: a binary 0/255 mask, but --classes names {len(names)} classes; "
                            "label maps must hold values 0..K-1")
        elif max_val >= len(names):
            raise DataError(f"{max_file}: label value {max_val} >= {len(names)} (classes {', '.join(names)}); "
                            "give --classes with one name per value")
    if names is not None and len(names) > 2:
        missing = [f"{k} ({names[k]})" for k in range(len(names)) if not seen[k]]
        if missing:
            warnings.append(f"{src.root}: class(es) {', '.join(missing)} never occur in the masks; the model "
                            "will not learn to draw them")
    if names is not None and len(names) == 2:
        names = tuple(names) if class_names is not None else None
    m = Modality(channels=channels, bits=bits, class_names=names)
    validate(m)
    return m, warnings


def intensity_window(raw_images: np.ndarray, percentiles=WINDOW_PERCENTILES) -> tuple[float, float]:
    """(low, high) at the given percentiles of the training images' raw values (whole numbers, high > low)."""
    v = np.asarray(raw_images).ravel()
    if v.size > 4_000_000:  # a fixed strided subsample: deterministic and plenty for two percentiles
        v = v[:: v.size // 4_000_000]
    lo, hi = np.percentile(v, percentiles)
    lo, hi = float(np.floor(lo)), float(np.ceil(hi))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def with_window(m: Modality, train_images: np.ndarray) -> Modality:
    """16-bit: the window of the training images; 8-bit: unchanged (the fixed [0, 255] map)."""
    if m.bits != 16:
        return m
    from dataclasses import replace

    return replace(m, window=intensity_window(train_images))

