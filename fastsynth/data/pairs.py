"""Scanning, validating and loading image/mask pairs.

Layouts read:
- a folder with ``images/`` and ``masks/`` holding files with the same stem (jpg/jpeg/png/tif/tiff/bmp);
- a Hugging Face dataset on disk (``save_to_disk`` folder, or a folder of parquet shards such as a
  fastsynth output) with ``image`` and ``mask`` columns.

Every problem is reported as a :class:`DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import DataError
from .readers import GREY_BAND, MAX_GREY_FRACTION, _open, read_mask  # noqa: F401 (read_mask: part of this API)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@dataclass
class PairSource:
    """Where pairs come from: ``items`` maps stem -> (image ref, mask ref)."""

    root: str
    kind: str  # "folder" | "hf"
    items: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # (stem/file, reason)
    _hf: object = None

    @property
    def stems(self) -> list[str]:
        return sorted(self.items)


def _list_images(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTS:
            raise DataError(
                f"{p}: not an image file (expected one of {', '.join(IMAGE_EXTS)}); move it out of {folder}"
            )
        if p.stem in out:
            raise DataError(f"{p}: two files share the stem {p.stem!r} ({out[p.stem].name} and {p.name})")
        out[p.stem] = p
    return out


def scan_pairs(root: str | os.PathLike, skip_bad: bool = False) -> PairSource:
    """Find the pairs under ``root`` without decoding them (fast); see :func:`load_pairs`."""
    rootp = Path(root)
    if not rootp.exists():
        raise DataError(f"{rootp}: no such folder")
    if not rootp.is_dir():
        raise DataError(f"{rootp}: not a folder (expected images/ and masks/ inside, or a dataset folder)")
    if (rootp / "images").is_dir() and (rootp / "masks").is_dir():
        src = PairSource(str(rootp), "folder")
        try:
            images = _list_images(rootp / "images")
            masks = _list_images(rootp / "masks")
        except DataError:
            if not skip_bad:
                raise
            images, masks = _lenient_list(rootp / "images", src), _lenient_list(rootp / "masks", src)
        for stem in sorted(set(images) | set(masks)):
            if stem not in masks:
                msg = f"{images[stem]}: no mask with the same stem in {rootp / 'masks'}"
            elif stem not in images:
                msg = f"{masks[stem]}: no image with the same stem in {rootp / 'images'}"
            else:
                src.items[stem] = (images[stem], masks[stem])
                continue
            if not skip_bad:
                raise DataError(msg)
            src.skipped.append((stem, msg))
        if not src.items:
            raise DataError(f"{rootp}: no image/mask pairs found in images/ and masks/")
        return src
    return _scan_hf(rootp)


def _lenient_list(folder: Path, src: PairSource) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTS:
            src.skipped.append((str(p), "not an image file"))
            continue
        out.setdefault(p.stem, p)
    return out


def _scan_hf(rootp: Path) -> PairSource:
    has_arrow = (rootp / "dataset_info.json").exists() or (rootp / "state.json").exists() or (
        rootp / "dataset_dict.json").exists()
    parquet = sorted(rootp.rglob("*.parquet"))
    if not has_arrow and not parquet:
        raise DataError(
            f"{rootp}: not a pair folder: expected images/ and masks/ subfolders (Kvasir-SEG layout), "
            "or a Hugging Face dataset on disk with image and mask columns"
        )
    import datasets  # heavy: only for this input kind

    try:
        if has_arrow:
            ds = datasets.load_from_disk(str(rootp))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
        else:
            ds = datasets.load_dataset("parquet", data_files=[str(p) for p in parquet], split="train")
    except Exception as exc:  # datasets raises many types for a corrupt folder
        raise DataError(f"{rootp}: could not read it as a Hugging Face dataset ({exc})") from None
    missing = [c for c in ("image", "mask") if c not in ds.column_names]
    if missing:
        raise DataError(f"{rootp}: dataset has no {missing} column(s); it has {ds.column_names}")
    if len(ds) == 0:
        raise DataError(f"{rootp}: dataset is empty")
    key = "id" if "id" in ds.column_names else ("index" if "index" in ds.column_names else None)
    stems = [str(v) for v in ds[key]] if key else [f"{i:08d}" for i in range(len(ds))]
    if len(set(stems)) != len(stems):
        stems = [f"{i:08d}" for i in range(len(ds))]
    src = PairSource(str(rootp), "hf")
    src.items = {s: (i, i) for i, s in enumerate(stems)}
    src._hf = ds
    return src


def center_crop_resize(img: "Image.Image", size: int, resample) -> "Image.Image":
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != size:
        img = img.resize((size, size), resample=resample, reducing_gap=None)
    return img


def load_pairs(
    src: PairSource,
    size: int,
    stems: Iterable[str] | None = None,
    skip_bad: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
    modality=None,
) -> tuple[list[str], np.ndarray]:
    """Decode, validate and resize pairs to uint8 [N, 4, size, size]. Returns (stems kept, array).

    ``modality`` (a :class:`~fastsynth.data.modality.Modality`): read grey / 16-bit images and label maps as
    :func:`load_pairs_modality` does; None: 8-bit RGB + binary mask, as always."""
    from .modality import Modality

    return load_pairs_modality(src, size, modality or Modality(), stems, skip_bad, progress)


def _collect(src: PairSource, stems, read_one, skip_bad: bool, progress) -> tuple[list[str], np.ndarray]:
    """Read each stem with ``read_one``; a bad pair stops the load, or with ``skip_bad`` is listed in src.skipped."""
    stems = list(src.stems if stems is None else stems)
    it = progress(stems) if progress else stems
    kept, arrays = [], []
    for stem in it:
        try:
            arr = read_one(stem)
        except DataError as exc:
            if not skip_bad:
                raise
            src.skipped.append((stem, str(exc)))
            continue
        kept.append(stem)
        arrays.append(arr)
    if not arrays:
        raise DataError(f"{src.root}: no usable pairs (all {len(stems)} were skipped)")
    return kept, np.stack(arrays)


def _load_folder(folder: str | os.PathLike, load_one, what: str):
    """(stems, stacked arrays) of every image file in ``folder``, sorted by stem; ``load_one(path)`` reads and
    resizes one file."""
    p = Path(folder)
    if not p.is_dir():
        raise DataError(f"{p}: no such folder of {what}")
    files = _list_images(p)
    if not files:
        raise DataError(f"{p}: no {what} found")
    return list(files), np.stack([load_one(f) for f in files.values()])


def resize_image_raw(a: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop + resize an image of its own kind (uint8 [H, W] / [H, W, 3] bicubic as always; uint16 [H, W]
    bicubic in float, rounded and clipped to 0..65535)."""
    from PIL import Image

    if a.dtype == np.uint16:
        im = center_crop_resize(Image.fromarray(a.astype(np.float32), mode="F"), size, Image.BICUBIC)
        return np.clip(np.rint(np.asarray(im)), 0, 65535).astype(np.uint16)
    return np.asarray(center_crop_resize(Image.fromarray(a), size, Image.BICUBIC))


def resize_label(a: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """Centre-crop + resize a label: a binary {0,255} mask bilinear + threshold at 128 (as always); a label map
    per class (its one-hot plane bilinear, then the largest), so no class is invented at a border between two."""
    from PIL import Image

    if num_classes == 2:
        mk = center_crop_resize(Image.fromarray(a), size, Image.BILINEAR)
        return np.where(np.asarray(mk) >= 128, 255, 0).astype(np.uint8)
    planes = [np.asarray(center_crop_resize(Image.fromarray((a == k).astype(np.float32), mode="F"), size,
                                            Image.BILINEAR)) for k in range(num_classes)]
    return np.argmax(np.stack(planes), axis=0).astype(np.uint8)


def resize_pairs(arr: np.ndarray, size: int, num_classes: int = 2) -> np.ndarray:
    """uint8 pairs [N, C + 1, H, W] (image channels, then the label) resized to size x size as the readers resize:
    the image bicubic, the label bilinear + threshold (per class for label maps)."""
    c = arr.shape[1] - 1
    out = np.empty((len(arr), c + 1, size, size), arr.dtype)
    for i, a in enumerate(arr):
        img = a[:c].transpose(1, 2, 0) if c == 3 else a[0]
        r = resize_image_raw(img, size)
        out[i, :c] = r.transpose(2, 0, 1) if c == 3 else r
        out[i, c] = resize_label(a[c], size, num_classes)
    return out


def prepare_pair_modality(image: np.ndarray, label: np.ndarray, size: int, name: str, modality) -> np.ndarray:
    """[C + 1, size, size] (uint8, or uint16 for 16-bit images): the image channels then the label."""
    if image.shape[:2] != label.shape[:2]:
        raise DataError(
            f"{name}: image is {image.shape[1]}x{image.shape[0]} but its mask is {label.shape[1]}x{label.shape[0]}"
        )
    im = resize_image_raw(image, size)
    im = im[None] if im.ndim == 2 else im.transpose(2, 0, 1)
    lab = resize_label(label, size, modality.num_classes)
    return np.concatenate([im, lab[None].astype(im.dtype)], axis=0)


def _read_pair_modality(src: PairSource, stem: str, size: int, modality) -> np.ndarray:
    from .modality import read_image_raw, read_label

    kind = modality.image_mode
    img_ref, mask_ref = src.items[stem]
    if src.kind == "hf":
        name = f"{src.root}[{stem}]"
        try:
            row = src._hf[img_ref]
        except Exception as exc:  # datasets decodes on access: corrupt bytes surface here
            raise DataError(f"{name}: unreadable row ({exc})") from None
        return prepare_pair_modality(read_image_raw(row["image"], name, kind),
                                     read_label(row["mask"], name + " mask", modality), size, name, modality)
    return prepare_pair_modality(read_image_raw(img_ref, str(img_ref), kind),
                                 read_label(mask_ref, str(mask_ref), modality), size,
                                 f"{img_ref} / {mask_ref}", modality)


def load_pairs_modality(src: PairSource, size: int, modality, stems: Iterable[str] | None = None,
                        skip_bad: bool = False, progress=None) -> tuple[list[str], np.ndarray]:
    """Like :func:`load_pairs` for any :class:`~fastsynth.data.modality.Modality`: [N, C + 1, size, size], the
    image channels in their own depth (uint8 or uint16), the last channel the label ({0,255} or 0..K-1)."""
    return _collect(src, stems, lambda stem: _read_pair_modality(src, stem, size, modality), skip_bad, progress)


def load_label_folder(folder, size: int, modality) -> tuple[list[str], np.ndarray]:
    """Labels for mask->image generation: uint8 [N, size, size] ({0,255} or 0..K-1), sorted by stem."""
    from .modality import read_label

    return _load_folder(folder, lambda f: resize_label(read_label(f, str(f), modality), size, modality.num_classes),
                        "masks")
