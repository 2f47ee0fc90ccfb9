"""Volumes in, 2D pairs out: NIfTI image/label volumes (a Medical Segmentation Decathlon folder, or a folder of
image/label volumes with matching names) and DICOM series with DICOM-SEG segmentations (``fastsynth.data.dicom``)
become a folder of 2D slices that every other stage reads as usual.

- Orientation is made consistent (each volume reoriented to the closest canonical RAS+ axes), then cut into 2D slices
  along ``axis`` (0, 1 or 2 of the canonical volume; default 2, the axial one for RAS+).
- Slices with foreground are all kept; of the empty ones, ``empty_fraction`` of the number kept (seeded).
- Each volume's intensities are windowed by its own percentiles (0.5 / 99.5 by default) onto 16-bit 0..65535, and
  the window is stored (``volumes.json``: per volume its file, shape, spacing, window and slices), so written images
  come back in a known scale.
- Slices are named ``VOLUME-sNNN``; the split keeps every slice of a volume on one side (``GROUP_RULE``).
- Label maps are decided per dataset (the Decathlon's ``labels`` names, or the values found across all volumes).

The 2D folder is written once under ``cache_dir()/volumes/`` (keyed by the files' names, sizes and modification times
and the slicing settings) and reused. Bad input (shapes or affines that differ, non-integer labels, a volume of all
zeros, a dataset.json listing a missing file) is one clear error naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import DataError, require
from ..utils import cache_dir

NIFTI = (".nii.gz", ".nii")
GROUP_RULE = r"^(.*)-s\d+$"  # the volume of a slice stem
SLICES_VERSION = 1


def _stem(p: Path) -> str:
    for ext in NIFTI:
        if p.name.endswith(ext):
            return p.name[: -len(ext)]
    return p.stem


def find_volumes(root: str | os.PathLike) -> tuple[list[tuple[str, object, object]], tuple | None, dict] | None:
    """([(name, image, label)], class names or None, provenance) of a volume folder, or None when ``root`` is not
    one (a Decathlon folder: dataset.json + imagesTr/ + labelsTr/; images/ (or imagesTr/) and masks/ / labels/ (or
    labelsTr/) holding NIfTI files with matching names; or DICOM files holding DICOM-SEG objects). Image and label
    are NIfTI file paths, or for DICOM both the same ``DicomCase``."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = _find_nifti(root)
    if found is not None:
        return found
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return None  # a 2D pair folder
    from .dicom import find_dicom, _segments

    cases = find_dicom(root)
    if cases is None:
        return None
    return [(c.name, c, c) for c in cases], tuple(_segments(cases)), {}


def _find_nifti(root: Path):
    names, prov = None, {}
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        try:
            d = json.loads((root / "dataset.json").read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{root / 'dataset.json'}: invalid JSON ({exc})") from None
        labels = d.get("labels") or {}
        if labels:
            names = tuple(str(labels[k]) for k in sorted(labels, key=lambda k: int(k)))
        prov = {"name": d.get("name"), "license": d.get("licence") or d.get("license"),
                "reference": (d.get("reference") or "").strip()}
        pairs = []
        for row in d.get("training") or []:
            img, lab = root / row["image"], root / row["label"]
            for f in (img, lab):
                if not f.is_file():
                    raise DataError(f"{root / 'dataset.json'} lists {row['image'] if f == img else row['label']}, "
                                    f"which is missing ({f})")
            pairs.append((_stem(img), img, lab))
        if pairs:
            return pairs, names, prov
    img_dir = next((root / s for s in ("imagesTr", "images") if (root / s).is_dir()), None)
    lab_dir = next((root / s for s in ("labelsTr", "labels", "masks") if (root / s).is_dir()), None)
    if img_dir is None or lab_dir is None:
        return None
    imgs = {_stem(p): p for p in img_dir.iterdir() if p.name.endswith(NIFTI)}
    if not imgs:
        return None
    labs = {_stem(p): p for p in lab_dir.iterdir() if p.name.endswith(NIFTI)}
    pairs = []
    for name in sorted(imgs):
        key = name[:-5] if name.endswith("_0000") else name  # nnU-Net naming: CASE_0000 image, CASE label
        if key not in labs:
            raise DataError(f"{imgs[name]}: no label volume with the same name in {lab_dir}")
        pairs.append((key, imgs[name], labs[key]))
    return pairs, names, prov


def _load(path: Path, what: str):
    nib = require("nibabel", "medical", "Reading NIfTI volumes")
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        return img, np.asarray(img.dataobj)
    except Exception as exc:
        raise DataError(f"{path}: unreadable NIfTI {what} ({type(exc).__name__}: {exc})") from None


def _files(img, lab) -> list[Path]:
    return list(img.files) if hasattr(img, "files") else [img, lab]


def _key(pairs, axis: int, empty_fraction: float, seed: int, percentiles) -> str:
    h = hashlib.sha256()
    for name, img, lab in pairs:
        for f in _files(img, lab):
            st = f.stat()
            h.update(f"{name}|{f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps([axis, empty_fraction, seed, list(percentiles), SLICES_VERSION]).encode())
    return h.hexdigest()[:20]


def slice_volumes(root: str | os.PathLike, axis: int = 2, empty_fraction: float = 0.1, seed: int = 0,
                  percentiles=(0.5, 99.5), progress=None, found=None) -> tuple[Path, dict]:
    """(a 2D pair folder, its record) for the volume folder ``root`` (see the module's docstring); ``found``: what
    ``find_volumes(root)`` returned, when the caller already has it (a DICOM folder's headers are read once)."""
    found = found if found is not None else find_volumes(root)
    if found is None:
        raise DataError(f"{root}: not a folder of volumes (a Decathlon dataset.json + imagesTr/ + labelsTr/, "
                        "images/ + labels/ with matching .nii.gz names, or DICOM series with DICOM-SEG files)")
    pairs, names, prov = found
    if axis not in (0, 1, 2):
        raise DataError(f"--slice-axis {axis}: choose 0, 1 or 2 (axes of the RAS+ volume; 2 = axial)")
    if not 0 <= empty_fraction <= 1:
        raise DataError(f"--empty-fraction {empty_fraction}: must be in [0, 1]")
    out = cache_dir() / "volumes" / _key(pairs, axis, empty_fraction, seed, percentiles)
    if (out / "volumes.json").is_file():
        return out, json.loads((out / "volumes.json").read_text())
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    record = {"axis": axis, "empty_fraction": empty_fraction, "percentiles": list(percentiles), "seed": seed,
              "class_names": list(names) if names else None, "source": Path(root).name, "provenance": prov,
              "group_by": GROUP_RULE, "volumes": {}}
    try:
        _write_slices(tmp, pairs, record, names, axis, empty_fraction, percentiles, rng, progress)
    except BaseException:  # nothing half-written: the partial folder goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out, json.loads((out / "volumes.json").read_text())


def _write_slices(tmp: Path, pairs, record: dict, names, axis: int, empty_fraction: float, percentiles, rng, progress):
    from PIL import Image

    max_label = 0
    it = progress(pairs) if progress else pairs
    for name, img_f, lab_f in it:
        if hasattr(img_f, "files"):  # a DICOM case: the series and its SEG
            from .dicom import load_case

            img, lab = load_case(img_f, list(names))
            a, b = np.asarray(img.dataobj), np.asarray(lab.dataobj)
            img_f, lab_f = img_f.images[0].parent, img_f.seg
        else:
            img, a = _load(img_f, "image")
            lab, b = _load(lab_f, "label")
        if a.ndim != 3 or b.shape != a.shape:
            raise DataError(f"{lab_f}: label volume of shape {b.shape}, its image {img_f.name} is {a.shape}")
        if not np.allclose(img.affine, lab.affine, atol=1e-3):
            raise DataError(f"{lab_f}: its affine (orientation / spacing / origin) differs from its image "
                            f"{img_f.name}'s; the label must lie on the image's grid")
        if np.issubdtype(b.dtype, np.floating) and not np.all(np.isfinite(b) & (b == np.round(b))):
            raise DataError(f"{lab_f}: label volume with non-integer values; a label map holds 0..K-1")
        b = np.round(b).astype(np.int64)
        if b.min() < 0 or b.max() > 255:
            raise DataError(f"{lab_f}: label values {b.min()}..{b.max()}; a label map holds 0..K-1 (at most 256)")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise DataError(f"{img_f}: image volume with NaN or infinite values")
        if a.max() == a.min():
            raise DataError(f"{img_f}: a volume of one value ({a.max():g}) everywhere; nothing to learn from")
        lo, hi = (float(v) for v in np.percentile(a, percentiles))
        if hi <= lo:
            hi = lo + 1.0
        u16 = np.clip(np.round((a - lo) / (hi - lo) * 65535.0), 0, 65535).astype(np.uint16)
        max_label = max(max_label, int(b.max()))
        u16, b = np.moveaxis(u16, axis, 0), np.moveaxis(b, axis, 0)
        fg = [k for k in range(b.shape[0]) if b[k].any()]
        empty = [k for k in range(b.shape[0]) if not b[k].any()]
        n_empty = min(len(empty), int(round(empty_fraction * len(fg))))
        keep = sorted(fg + (list(rng.choice(empty, n_empty, replace=False)) if n_empty else []))
        for k in keep:
            # rows of the 2D image: the first remaining axis, flipped so anterior / superior is up
            Image.fromarray(np.ascontiguousarray(np.flipud(u16[k].T))).save(tmp / "images" / f"{name}-s{k:03d}.png")
            Image.fromarray(np.ascontiguousarray(np.flipud(b[k].T)).astype(np.uint8)).save(
                tmp / "masks" / f"{name}-s{k:03d}.png")
        zooms = [float(z) for z in img.header.get_zooms()[:3]]
        record["volumes"][name] = {"image": img_f.name, "label": lab_f.name, "shape": list(a.shape),
                                   "spacing": zooms, "window": [lo, hi], "slices": [int(k) for k in keep],
                                   "n_foreground": len(fg)}
    if record["class_names"] is None:
        record["class_names"] = ["background"] + [f"class{k}" for k in range(1, max(max_label, 1) + 1)]
    (tmp / "volumes.json").write_text(json.dumps(record, indent=1) + "\n")


def model_pixel_spacing(record: dict, resolution: int) -> list[float] | None:
    """mm per pixel (row, column) of a model's images: the volumes' in-plane spacing scaled by the centre crop and
    resize to ``resolution`` (the median over the volumes), or None when no volume records it."""
    rows, cols = [], []
    axis = int(record.get("axis", 2))
    for v in (record.get("volumes") or {}).values():
        if not v.get("spacing") or not v.get("shape"):
            continue
        a, b = [k for k in range(3) if k != axis]  # a 2D slice is flipud(slice.T): rows along b, columns along a
        side = min(v["shape"][a], v["shape"][b])  # the centre crop's side, in voxels
        rows.append(v["spacing"][b] * side / resolution)
        cols.append(v["spacing"][a] * side / resolution)
    return [round(float(np.median(rows)), 6), round(float(np.median(cols)), 6)] if rows else None
