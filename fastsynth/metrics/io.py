"""Reading what evaluation compares: a fastsynth dataset folder and a real reference set.

A real reference is a pair folder (``images/`` + ``masks/`` or a Hugging Face dataset on disk), or a training
run / model folder holding ``split.json``: then the data folder it was trained on is read and its split is
kept, so metrics compare against held-out test images and the memorization audit searches the training images.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dataset.writer import MANIFEST, read_manifest, shard_files  # noqa: F401 (re-exported for metrics)
from ..errors import DataError, FastsynthError
from ..utils import read_json


@dataclass
class SynthSet:
    root: Path
    manifest: dict
    images: np.ndarray  # uint8 [N, H, W, 3]
    masks: np.ndarray  # uint8 [N, H, W] {0, 255}
    index: np.ndarray
    source: list
    # what the generating model made (the manifest's "data"); images above are its 8-bit RGB view
    modality: object = None


@dataclass
class RealSet:
    root: str
    split_from: str | None  # the split.json used, if any
    train_stems: list
    test_stems: list
    train: np.ndarray | None = None  # uint8 [N, 4, H, W]
    test: np.ndarray | None = None
    notes: list = field(default_factory=list)
    split_test: list = field(default_factory=list)  # the held-out stems as the split file lists them


def _open(path: Path):
    """A written image or label file as a PIL image (PNG, or a 2D NIfTI file of ``--format nifti``)."""
    from PIL import Image

    if path.name.endswith(".nii.gz"):
        from ..dataset.nifti import decode

        return Image.fromarray(decode(path))
    return Image.open(path)


def _decode(b: bytes, what: str):
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(b))
        im.load()
        return im
    except Exception as exc:
        raise DataError(f"{what}: undecodable image ({exc})") from None


def load_synthetic(root: str | Path, limit: int | None = None, seed: int = 0) -> SynthSet:
    """Decode a fastsynth dataset folder (parquet or png format). ``limit``: a seeded subset of rows."""
    from PIL import Image

    root = Path(root)
    m = read_manifest(root)
    files = shard_files(root, m)
    if not files:
        raise DataError(f"{root}: the manifest is there but no shards are (generation not run or not finished?)")
    index, source, im_refs, mk_refs = [], [], [], []
    if m.get("format", "parquet") == "parquet":
        import pyarrow.parquet as pq

        for f in files:
            t = pq.read_table(f)
            missing = [c for c in ("image", "mask", "index") if c not in t.column_names]
            if missing:
                raise DataError(f"{f}: not a fastsynth shard (missing column(s) {missing})")
            d = t.to_pydict()
            index += d["index"]
            source += d.get("source", [""] * t.num_rows)
            im_refs += [(x or {}).get("bytes") for x in d["image"]]
            mk_refs += [(x or {}).get("bytes") for x in d["mask"]]
    else:
        for f in files:
            for line in f.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    index.append(r["index"])
                    source.append(r.get("source", ""))
                    im_refs.append(root / r["image"])
                    mk_refs.append(root / r["mask"])
    order = np.argsort(index, kind="stable")
    if limit is not None and limit < len(order):
        rng = np.random.default_rng(seed)
        order = np.sort(rng.choice(order, limit, replace=False))
    modality = synth_modality(m)
    imgs, masks = [], []
    for i in order:
        what = f"{root} row {index[i]}"
        if im_refs[i] is None or mk_refs[i] is None:
            raise DataError(f"{what}: image or mask missing")
        im = _open(im_refs[i]) if isinstance(im_refs[i], Path) else _decode(im_refs[i], what)
        mk = _open(mk_refs[i]) if isinstance(mk_refs[i], Path) else _decode(mk_refs[i], what + " mask")
        a, b = _image_view(im, modality, what), np.asarray(mk.convert("L"))
        if a.shape[:2] != b.shape:
            raise DataError(f"{what}: image {a.shape[:2]} and mask {b.shape} differ in size")
        if imgs and a.shape != imgs[0].shape:
            raise DataError(f"{what}: image size {a.shape[:2]} differs from row {index[order[0]]}'s "
                            f"{imgs[0].shape[:2]}; a dataset must have one resolution")
        imgs.append(a)
        if m.get("format") in ("nnunet", "nifti") and modality.binary:  # labels as class indices 0/1
            b = (b > 0).astype(np.uint8) * 255
        masks.append(np.where(b >= 128, 255, 0).astype(np.uint8) if modality.binary else _label_view(b, modality, what))
    return SynthSet(root, m, np.stack(imgs), np.stack(masks), np.asarray(index)[order],
                    [source[i] for i in order], modality)


def real_groups(rs: RealSet) -> list[str] | None:
    """The group (volume, patient) of each real training stem, from the split file's ``groups``, or None."""
    if not rs.split_from:
        return None
    d = read_json(Path(rs.split_from), "split file")
    where = {stem: g for g, stems in (d.get("groups") or {}).items() for stem in stems}
    if not where or any(s not in where for s in rs.train_stems):
        return None
    return [where[s] for s in rs.train_stems]


def resolve_real(path: str | Path, heldout_fraction: float = 0.2, split_seed: int = 0) -> tuple:
    """(PairSource, RealSet without arrays). A run/model folder with split.json: its data and split;
    a plain pair folder: a seeded split (``heldout_fraction`` held out) noted in ``notes``."""
    from ..data import make_split, scan_pairs
    from ..data.provenance import DATA_PATH_ENV, find_training_data

    p = Path(path)
    if not p.exists():
        from ..models.denoiser import BUNDLED_MODELS

        if str(path) not in BUNDLED_MODELS:
            raise DataError(f"--real {path}: no such folder (give real pairs, a run or model folder, or a bundled "
                            f"model's name: {', '.join(sorted(BUNDLED_MODELS))})")
        p = BUNDLED_MODELS[str(path)]  # a bundled model by name: its held-out split of its training data
    split_file = next((c for c in (p / "split.json", p / "model" / "split.json") if c.is_file()), None)
    if split_file is not None:
        split = read_json(split_file, "split file")
        if not isinstance(split, dict) or not isinstance(split.get("train"), list) \
                or not isinstance(split.get("test"), list):
            raise FastsynthError(f"{split_file}: not a split file (expected 'train' and 'test' lists of stems)")
        data = None
        for cfg_file in (p / "config.json", split_file.parent / "fastsynth.json", p / "model" / "fastsynth.json"):
            if cfg_file.is_file():
                c = read_json(cfg_file, "config")
                if not isinstance(c, dict):
                    raise FastsynthError(f"{cfg_file}: corrupt config (not a JSON object)")
                # a run's config.json: "data" is the folder; a model's fastsynth.json: "data" describes the
                # images and labels (a dict) and training.data is the folder
                data = c.get("data") if isinstance(c.get("data"), str) else None
                data = data or (c.get("training") or {}).get("data")
                if data:
                    break
        if not data:
            raise FastsynthError(f"{split_file}: found a split but not the data folder it refers to "
                                 "(config.json 'data' or fastsynth.json training.data)")
        data_dir, cands = find_training_data(data, split_file.parent)
        if data_dir is None:
            raise DataError(f"{p}: its training data {data!r} is not found (tried {', '.join(map(str, cands))}); "
                            f"set {DATA_PATH_ENV} to the folder that holds {Path(data).name}/, or pass the data "
                            "folder itself as --real (a seeded split, not the model's)")
        from ..data.volumes import find_volumes, slice_volumes

        found = find_volumes(data_dir)
        if found is not None:  # a volume folder: its slices, cut as the run cut them
            run_cfg = next((read_json(c, "config") for c in (p / "config.json", split_file.parent.parent /
                                                              "config.json") if c.is_file()), {}) or {}
            vol = ((read_json(split_file.parent / "fastsynth.json", "model metadata")
                    if (split_file.parent / "fastsynth.json").is_file() else {}).get("training") or {}).get("volumes") \
                or {}
            data_dir, _ = slice_volumes(data_dir, int(run_cfg.get("slice_axis", vol.get("slice_axis", 2))),
                                        float(run_cfg.get("empty_fraction", vol.get("empty_fraction", 0.1))),
                                        int(run_cfg.get("split_seed", 0)), found=found)
        src = scan_pairs(data_dir)
        have = set(src.stems)
        train = [s for s in split["train"] if s in have]
        test = [s for s in split["test"] if s in have]
        rs = RealSet(str(data_dir), str(split_file), train, test, split_test=[str(s) for s in split["test"]])
        if not test:
            rs.notes.append(f"{split_file} holds no test stems present in {data_dir}; metrics use the "
                            "training images as reference")
        return src, rs
    src = scan_pairs(p)
    sp = make_split(src.stems, heldout_fraction, split_seed, group_by="auto")
    rs = RealSet(str(p), None, sp["train"], sp["test"])
    rs.notes.append(f"{p} has no split.json: a seeded split ({heldout_fraction:.0%} held out, seed {split_seed}) "
                    "is used for the downstream benchmark; if the generator saw these images, held-out scores "
                    "are optimistic")
    return src, rs


def load_test_set(path: str | Path, size: int, modality=None) -> tuple[list[str], np.ndarray]:
    """An extra real test set (all its pairs), resized to ``size``; missing masks are an error. ``modality``
    (not the default RGB binary one): read as the model's data and returned as its 8-bit view + label."""
    from ..data import load_pairs, scan_pairs

    src = scan_pairs(path)  # raises DataError naming an image without a mask
    return load_real(src, size, None, modality)


# --- any modality (issue 11) --------------------------------------------------------------------------------
def synth_modality(manifest: dict):
    from ..data.modality import modality_from_dict

    return modality_from_dict(manifest.get("data"))


def _image_view(im, modality, what: str) -> np.ndarray:
    """A decoded synthetic image as the 8-bit RGB view of its modality (RGB: as always)."""
    from ..data.codec import raw_to_rgb8

    if modality is None or modality.channels == 3:
        return np.asarray(im.convert("RGB"))
    a = np.asarray(im)
    if a.ndim != 2:
        raise DataError(f"{what}: a {im.mode} image, but the dataset's manifest says greyscale ({modality.image_mode})")
    return raw_to_rgb8(a[None], modality)[0]


def _label_view(b: np.ndarray, modality, what: str) -> np.ndarray:
    if int(b.max()) >= modality.num_classes:
        raise DataError(f"{what}: label value {int(b.max())} >= {modality.num_classes} (classes "
                        f"{', '.join(modality.names)})")
    return b.astype(np.uint8)


def load_real(src, size: int, stems, modality=None) -> tuple[list[str], np.ndarray]:
    """Real pairs as uint8 [N, 4, H, W] for the metrics: the 8-bit RGB view of the images + the label ({0,255}
    or 0..K-1). The default modality (RGB, binary) reads exactly as always."""
    from ..data import load_pairs
    from ..data.codec import pairs_to_view4

    if modality is None or modality.is_default:
        return load_pairs(src, size, stems)
    kept, arr = load_pairs(src, size, stems, modality=modality)
    return kept, pairs_to_view4(arr, modality)
