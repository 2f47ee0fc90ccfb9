"""The synthetic dataset on disk: the contract every later stage reads.

Layout (``--format parquet``, the default):
  data/train-00000.parquet ...   shard k holds rows [k*S, min((k+1)*S, n)); columns image, mask (Image
                                 features, PNG), index, seed, mode, source
  fastsynth.json                 the manifest: settings, model fingerprint, n, shard size
  README.md                      the dataset card (YAML metadata + provenance)

``--format png``: images/{index:08d}.png, masks/{index:08d}.png, and shards/{k:05d}.jsonl holding the rows'
metadata (written last, so a shard is complete exactly when its .jsonl exists).

Every file is written to a temporary name and renamed into place, so a shard is either complete or absent,
and a killed run is completed by running the same command again.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, FastsynthError
from ..utils import write_atomic

MANIFEST = "fastsynth.json"
# settings that must match to resume or extend an existing folder
IDENTITY_KEYS = ("model_sha256", "mode", "sampler", "steps", "seed", "resolution", "shard_size", "format",
                 "mask_threshold", "opening_px", "dilate_px", "source_fingerprint", "precision", "guidance",
                 "redraw", "max_components", "guidance_interval", "autoguide", "condition_at", "cascade",
                 "keep_agreeing")
# the value an identity key had before it existed (datasets written by older versions)
IDENTITY_DEFAULTS = {"guidance": 1.0, "redraw": False, "max_components": 0, "guidance_interval": None,
                     "autoguide": None, "condition_at": None, "cascade": None, "keep_agreeing": None}


NNUNET_PREFIX = "fastsynth"  # nnU-Net case names: fastsynth_00000042


def shard_name(k: int, fmt: str = "parquet") -> str:
    """The path of shard ``k`` relative to the dataset folder (the one place shard names are made)."""
    return f"data/train-{k:05d}.parquet" if fmt == "parquet" else f"shards/{k:05d}.jsonl"


def shard_files(root: Path, manifest: dict) -> list[Path]:
    """The shard files present in a dataset folder, in order."""
    if manifest.get("format", "parquet") == "parquet":
        return sorted((Path(root) / "data").glob("train-*.parquet"))
    return sorted((Path(root) / "shards").glob("*.jsonl"))


def read_manifest(root: str | os.PathLike, missing_ok: bool = False) -> dict | None:
    """The manifest of a dataset folder (the one reader of ``fastsynth.json``); a missing or corrupt one is a
    clear error (``missing_ok``: None when there is none yet)."""
    root = Path(root)
    p = root / MANIFEST
    if not p.is_file():
        if missing_ok:
            return None
        if not root.is_dir():
            raise DataError(f"{root}: no such folder")
        raise DataError(f"{root}: not a fastsynth dataset (no {MANIFEST}); give the folder written by "
                        "`fastsynth generate --out DIR`")
    try:
        m = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: corrupt manifest ({exc}); remove the folder or choose another --out") from None
    if not isinstance(m, dict):
        raise DataError(f"{p}: corrupt manifest (not a JSON object)")
    return m


def features(agreement: bool = False):
    """The dataset's columns; ``agreement``: the label agreement of each kept pair (``generate --keep-agreeing``,
    ``fastsynth filter``)."""
    import datasets

    return datasets.Features({
        "image": datasets.Image(),
        "mask": datasets.Image(),
        "index": datasets.Value("int64"),
        "seed": datasets.Value("int64"),
        "mode": datasets.Value("string"),
        "source": datasets.Value("string"),
        **({"agreement": datasets.Value("float32")} if agreement else {}),
    })


def encode_png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


@dataclass
class Rows:
    """One shard's content: uint8 images [n, H, W, 3], masks [n, H, W] in {0, 255}, and per-row metadata."""

    index: np.ndarray
    seed: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    mode: str
    source: list
    agreement: np.ndarray | None = None  # Dice of each mask with the filter's segmenter (generate --keep-agreeing)


class DatasetWriter:
    def __init__(self, out: str | os.PathLike, fmt: str = "parquet", spacing=(1.0, 1.0)):
        from ..config import FORMATS

        if fmt not in FORMATS:
            raise FastsynthError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        self.out = Path(out)
        self.fmt = fmt
        self.spacing = tuple(float(s) for s in spacing)  # mm per pixel (row, column) of the nifti format

    # --- shards -------------------------------------------------------------------------------------
    def shard_path(self, k: int) -> Path:
        return self.out / shard_name(k, self.fmt)

    def shard_rows(self, k: int) -> int | None:
        """Rows in a complete shard k, or None when it is absent or unreadable."""
        p = self.shard_path(k)
        if not p.exists():
            return None
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                return pq.ParquetFile(p).metadata.num_rows
            return sum(1 for line in p.read_text().splitlines() if line.strip())
        except Exception:
            return None

    def any_shard(self) -> bool:
        """Whether any shard of either format is there (a parquet folder is not empty to a png run)."""
        return any(d.is_dir() and any(f.suffix in (".parquet", ".jsonl") for f in d.iterdir())
                   for d in (self.out / "data", self.out / "shards"))

    def write_shard(self, k: int, rows: Rows) -> None:
        """Write shard ``k`` from all its rows at once (see :meth:`open_shard` to stream a shard in chunks)."""
        sink = self.open_shard(k)
        try:
            sink.add(rows)
            sink.close()
        except BaseException:
            sink.abort()
            raise

    def open_shard(self, k: int) -> "ShardSink":
        """A shard written in chunks of rows as they are made, so only one chunk is in memory at a time (at 256²
        a 1000-row shard is 260 MB of pixels). The shard appears under its name only on ``close()``."""
        return ShardSink(self, k)

    def row_paths(self, i: int) -> tuple[str, str]:
        """(image, label) paths of row i in the png, nnunet and nifti formats, relative to the dataset folder."""
        if self.fmt == "nifti":
            return f"images/{i:08d}.nii.gz", f"labels/{i:08d}.nii.gz"
        if self.fmt == "nnunet":  # nnU-Net v2 raw: CASE_0000.png (the one channel file of a 2D PNG case)
            return f"imagesTr/{NNUNET_PREFIX}_{i:08d}_0000.png", f"labelsTr/{NNUNET_PREFIX}_{i:08d}.png"
        return f"images/{i:08d}.png", f"masks/{i:08d}.png"

    def write_nnunet_json(self, modality, n: int) -> Path:
        """nnU-Net v2's dataset.json: channel names, labels (consecutive class indices from 0), numTraining, the file
        ending. An RGB PNG is one file of three channels (R, G, B), as nnU-Net's natural-image reader reads it."""
        channels = {"0": "R", "1": "G", "2": "B"} if modality.channels == 3 else {"0": "grey"}
        labels = {"background": 0, "foreground": 1} if modality.binary else \
            {name: k for k, name in enumerate(modality.names)}
        d = {"channel_names": channels, "labels": labels, "numTraining": int(n), "file_ending": ".png",
             "name": self.out.name, "description": "synthetic image/label pairs from fastsynth (see README.md)",
             "overwrite_image_reader_writer": "NaturalImage2DIO"}
        return write_atomic(self.out / "dataset.json", json.dumps(d, indent=2) + "\n")

    def clean_partials(self) -> None:
        """Remove temporaries left by a killed run."""
        for sub in ("data", "shards", "images", "masks", "labels", "imagesTr", "labelsTr"):
            d = self.out / sub
            if d.is_dir():
                for f in d.glob("*.tmp"):
                    f.unlink(missing_ok=True)

    # --- manifest -----------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        return read_manifest(self.out, missing_ok=True)

    def write_manifest(self, manifest: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    def write_card(self, text: str) -> None:
        write_atomic(self.out / "README.md", text)



ROW_GROUP = 256  # parquet rows per row group: a chunk streamed into a shard is written as row groups of this size


class ShardSink:
    """One shard being written: ``add`` chunks of rows in order, then ``close`` (fsync and rename into place) or
    ``abort`` (remove the temporary). A parquet shard grows one row group at a time in a temporary file; the png,
    nnunet and nifti formats write each row's files at once and the shard's .jsonl, which marks it complete, last."""

    def __init__(self, writer: DatasetWriter, k: int):
        self.w, self.path = writer, writer.shard_path(k)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")  # unique per process: ranks never share one
        self._pq = None
        self._schema = None  # the parquet schema (the dataset's Image features), made at the first chunk
        self._lines: list[str] = []

    def add(self, rows: Rows) -> None:
        if self.w.fmt == "parquet":
            self._add_parquet(rows)
        else:
            self._add_files(rows)

    def _add_parquet(self, rows: Rows) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._schema is None:
            self._schema = features(rows.agreement is not None).arrow_schema
        workers = max(1, (os.cpu_count() or 1) // 4)  # zlib releases the GIL; leave cores to sampling
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as ex:
                ims, mks = list(ex.map(encode_png, rows.images)), list(ex.map(encode_png, rows.masks))
        else:
            ims, mks = [encode_png(im) for im in rows.images], [encode_png(m) for m in rows.masks]
        table = pa.table({
            "image": [{"bytes": b, "path": None} for b in ims],
            "mask": [{"bytes": b, "path": None} for b in mks],
            "index": pa.array(rows.index, pa.int64()),
            "seed": pa.array(rows.seed, pa.int64()),
            "mode": [rows.mode] * len(rows.index),
            "source": list(rows.source),
            **({"agreement": pa.array(rows.agreement, pa.float32())} if rows.agreement is not None else {}),
        }, schema=self._schema)
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.tmp, self._schema)
        self._pq.write_table(table, row_group_size=ROW_GROUP)

    def _add_files(self, rows: Rows) -> None:
        w = self.w
        agree = rows.agreement if rows.agreement is not None else [None] * len(rows.index)
        for i, s, im, m, src, a in zip(rows.index, rows.seed, rows.images, rows.masks, rows.source, agree):
            paths = w.row_paths(int(i))
            if w.fmt in ("nnunet", "nifti") and m.max() == 255:  # labels as class indices: a binary mask 0/1
                m = (m > 0).astype(np.uint8)
            for rel, arr, is_label in zip(paths, (im, m), (False, True)):
                f = w.out / rel
                f.parent.mkdir(parents=True, exist_ok=True)
                ftmp = f.with_name(f"{f.name}.{os.getpid()}.tmp")
                if w.fmt == "nifti":
                    from .nifti import encode

                    ftmp.write_bytes(encode(arr, w.spacing, label=is_label))
                else:
                    ftmp.write_bytes(encode_png(arr))
                os.replace(ftmp, f)
            self._lines.append(json.dumps({"index": int(i), "seed": int(s), "mode": rows.mode, "source": src,
                                           "image": paths[0], "mask": paths[1],
                                           **({"agreement": round(float(a), 6)} if a is not None else {})}))

    def close(self) -> None:
        if self.w.fmt == "parquet":
            if self._pq is None:
                raise FastsynthError(f"shard {self.path.name}: no rows were added")
            self._pq.close()
            self._pq = None
        else:
            self.tmp.write_text("\n".join(self._lines) + "\n")
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._pq is not None:
            try:
                self._pq.close()
            except Exception:
                pass
            self._pq = None
        self.tmp.unlink(missing_ok=True)


def dataset_identity(manifest: dict) -> dict:
    """The settings of a manifest that decide its rows (IDENTITY_KEYS, with the values older versions implied)."""
    return {k: manifest.get(k, IDENTITY_DEFAULTS.get(k)) for k in IDENTITY_KEYS}


def check_compatible(existing: dict, wanted: dict, out: Path) -> None:
    a, b = dataset_identity(existing), dataset_identity(wanted)
    diff = {k: (a[k], b[k]) for k in IDENTITY_KEYS if a[k] != b[k]}
    if diff:
        desc = "; ".join(f"{k}: existing {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise FastsynthError(
            f"{out} already holds a dataset made with other settings ({desc}). Use the same settings to "
            "resume or extend it, or choose another --out")
