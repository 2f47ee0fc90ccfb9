"""Label-consistency filter: keep the synthetic pairs whose generated mask agrees with a segmenter trained on
real data. Streams shard by shard; each output shard is written atomically, so a killed run resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import FastsynthError


def filter_dataset(synth_dir: str | os.PathLike, segmenter: str | os.PathLike, out: str | os.PathLike,
                   min_dice: float, device: str = "cpu", batch_size: int = 64, progress: bool = True,
                   backend: str = "auto") -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from ..dataset import DatasetWriter, render_card
    from .downstream import dice_iou, load_segmenter, predict
    from .io import _decode, read_manifest, shard_files

    if not 0.0 <= min_dice <= 1.0:
        raise FastsynthError(f"--min-dice {min_dice}: must be between 0 and 1")
    src, out = Path(synth_dir), Path(out)
    manifest = read_manifest(src)
    if manifest.get("format", "parquet") != "parquet":
        raise FastsynthError(f"{src}: filter reads parquet datasets (this one was written with --format png)")
    if out.resolve() == src.resolve():
        raise FastsynthError("--out must be a new folder, not the input dataset")
    from ..pipeline import resolve_device
    from ..runtime import make_segmenter_fn, resolve_backend
    from ..utils import file_sha256
    from .downstream import WEIGHTS_NAME

    dev = resolve_device(device)
    model, seg_cfg, _ = load_segmenter(segmenter, dev)
    backend = resolve_backend(backend, dev)
    fn = make_segmenter_fn(model, seg_cfg.resolution, backend, dev, batch_size=batch_size,
                           model_sha=file_sha256(Path(segmenter) / WEIGHTS_NAME))
    writer = DatasetWriter(out, "parquet")
    files = shard_files(src, manifest)
    kept = total = 0
    bar = tqdm(files, unit="shard", desc="filtering", disable=not progress)
    for k, f in enumerate(bar):
        table = pq.read_table(f)
        dst = writer.shard_path(k)
        if dst.exists():  # done by an earlier (killed) run
            done = pq.read_table(dst, columns=["index"])
            kept, total = kept + done.num_rows, total + table.num_rows
            continue
        images = np.stack([np.array(_decode(b["bytes"], f"{f} image")) for b in table.column("image").to_pylist()])
        masks = np.stack([np.array(_decode(b["bytes"], f"{f} mask")) for b in table.column("mask").to_pylist()])
        pred = predict(fn, images.transpose(0, 3, 1, 2), seg_cfg.threshold, batch_size, dev)
        dice, _ = dice_iou(pred, masks >= 128)
        keep = dice >= min_dice
        new = table.append_column("agreement", pa.array(dice.astype(np.float32))).filter(pa.array(keep))
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp")
        pq.write_table(new, tmp)
        os.replace(tmp, dst)
        kept, total = kept + int(keep.sum()), total + len(keep)
        bar.set_postfix(kept=f"{kept}/{total}")
    info = {"segmenter": str(segmenter), "min_dice": min_dice, "kept": kept, "total": total,
            "source_dataset": str(src), "backend": backend}
    final = {**manifest, "n": kept, "filter": info, "complete": True}
    writer.write_manifest(final)
    writer.write_card(render_card(final) + f"\n## Label-consistency filter\nKept {kept} of {total} pairs whose "
                      f"mask agrees with the segmenter `{segmenter}` at Dice >= {min_dice} (column `agreement`).\n")
    return info
