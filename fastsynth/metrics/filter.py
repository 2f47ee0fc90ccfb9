"""Label-consistency filter: keep the synthetic pairs whose generated mask agrees with a segmenter trained on
real data.

Streams shard by shard: the kept rows of source shard k go to ``OUT/.filter-parts/part-k.parquet`` (written
atomically, empty when nothing is kept), so a killed run resumes where it stopped. When every part is there,
the kept rows are repacked into standard shards of the source's shard size, so the result is an ordinary
fastsynth dataset (no empty shards; ``datasets`` loads it and ``publish`` validates it).

Pairs are scored at the segmenter's resolution (resized as ``evaluate --seg-resolution`` resizes them: the image
bicubic, the mask bilinear + threshold), so a 256² dataset is filtered by the judge's 128² segmenter; the rows
kept are the originals, at their own resolution."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FastsynthError
from ..runtime.agreement import AgreementScorer


def filter_dataset(synth_dir: str | os.PathLike, segmenter: str | os.PathLike, out: str | os.PathLike,
                   min_dice: float | None = None, device: str = "cpu", batch_size: int = 64, progress: bool = True,
                   backend: str = "auto", keep_fraction: float | None = None) -> dict:
    """Keep the pairs of ``synth_dir`` whose mask agrees with the segmenter at Dice >= ``min_dice``, or the better
    ``keep_fraction`` of them (the threshold is then the agreement of the last pair kept, known once every pair is
    scored; ties at it are kept). Returns what was kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from ..dataset import DatasetWriter, read_manifest, render_card, shard_files
    from .io import _decode

    if (min_dice is None) == (keep_fraction is None):
        raise FastsynthError("give either --min-dice or --keep-fraction (not both)")
    if min_dice is not None and not 0.0 <= min_dice <= 1.0:
        raise FastsynthError(f"--min-dice {min_dice}: must be between 0 and 1")
    if keep_fraction is not None and not 0.0 < keep_fraction <= 1.0:
        raise FastsynthError(f"--keep-fraction {keep_fraction}: must be above 0 and at most 1")
    src, out = Path(synth_dir), Path(out)
    manifest = read_manifest(src)
    if manifest.get("format", "parquet") != "parquet":
        raise FastsynthError(f"{src}: filter reads parquet datasets (this one was written with --format png)")
    if (manifest.get("data") or {}).get("channels", 3) != 3 or (manifest.get("data") or {}).get("class_names"):
        raise FastsynthError(f"{src}: filter works on RGB datasets with binary masks for now (this one is "
                             f"{manifest['data'].get('image_mode')}, classes {manifest['data'].get('class_names')}); "
                             "use `fastsynth evaluate --metrics agreement` for its per-class label agreement")
    if out.resolve() == src.resolve():
        raise FastsynthError("--out must be a new folder, not the input dataset")
    if out.exists() and any(out.iterdir()) and not (out / ".filter-parts").is_dir():
        try:
            earlier = "filter" in read_manifest(out)
        except FastsynthError:  # no or unreadable manifest: not ours
            earlier = False
        if not earlier:
            raise FastsynthError(f"--out {out} exists and is not an earlier filter output; choose a new folder")
    scorer = AgreementScorer(segmenter, device, backend, batch_size)
    seg_sha = scorer.sha256
    writer = DatasetWriter(out, "parquet")
    files = shard_files(src, manifest)
    parts = out / ".filter-parts"
    part_min = 0.0 if keep_fraction is not None else float(min_dice)  # a fraction: every pair staged, scored
    _check_parts(parts, {"segmenter_sha256": seg_sha, "min_dice": part_min,
                         **({"keep_fraction": keep_fraction} if keep_fraction is not None else {}),
                         "source_model_sha256": manifest.get("model_sha256"), "source_n": manifest.get("n"),
                         "source_seed": manifest.get("seed"), "source_mode": manifest.get("mode")})
    kept = total = 0
    bar = tqdm(files, unit="shard", desc="filtering", disable=not progress)
    for k, f in enumerate(bar):
        dst = parts / f"part-{k:05d}.parquet"
        if dst.exists():  # done by an earlier (killed) run
            meta_rows = pq.ParquetFile(dst).metadata.num_rows
            kept, total = kept + meta_rows, total + pq.ParquetFile(f).metadata.num_rows
            continue
        table = pq.read_table(f)
        images = np.stack([np.array(_decode(b["bytes"], f"{f} image")) for b in table.column("image").to_pylist()])
        masks = np.stack([np.array(_decode(b["bytes"], f"{f} mask")) for b in table.column("mask").to_pylist()])
        dice = scorer(images, masks)
        keep = dice >= part_min
        new = table.append_column("agreement", pa.array(dice.astype(np.float32))).filter(pa.array(keep))
        tmp = dst.with_name(dst.name + ".tmp")
        pq.write_table(new, tmp)
        os.replace(tmp, dst)
        kept, total = kept + int(keep.sum()), total + len(keep)
        bar.set_postfix(kept=f"{kept}/{total}")
    if keep_fraction is not None:
        min_dice, kept = _fraction_threshold(parts, len(files), keep_fraction)
    if kept == 0:
        raise FastsynthError(f"no pair of {src} reaches Dice >= {min_dice} with the segmenter; lower --min-dice "
                             f"(the per-pair scores of this run are in {parts})")
    # a fraction's threshold is one of the stored (float32) scores; a --min-dice run staged only kept rows
    _repack(parts, len(files), writer, int(manifest.get("shard_size", 1000)),
            min_dice if keep_fraction is not None else None)
    info = {"segmenter": str(segmenter), "min_dice": min_dice, "keep_fraction": keep_fraction, "kept": kept,
            "total": total, "source_dataset": str(src), "backend": scorer.backend, "scored_at": scorer.resolution}
    final = {**manifest, "n": kept, "filter": info, "complete": True}
    writer.write_manifest(final)
    which = f"the better {keep_fraction:.0%}: " if keep_fraction is not None else ""
    writer.write_card(render_card(final) + f"\n## Label-consistency filter\nKept {kept} of {total} pairs ({which}those "
                      f"whose mask agrees with the segmenter `{segmenter}` at Dice >= {min_dice:.4g}; column "
                      "`agreement`).\n")
    return info


def _check_parts(parts: Path, settings: dict) -> None:
    """Staging parts are reused only by a run with the same settings (segmenter, --min-dice, source dataset)."""
    from ..utils import read_json, write_json_atomic

    f = parts / "settings.json"
    if parts.is_dir() and any(parts.glob("part-*.parquet")):
        earlier = read_json(f, "filter settings") if f.is_file() else None
        if earlier != settings:
            diff = "unknown (no settings.json)" if earlier is None else "; ".join(
                f"{k}: earlier {earlier.get(k)!r} vs now {v!r}" for k, v in settings.items() if earlier.get(k) != v)
            raise FastsynthError(f"{parts} holds the parts of an interrupted filter run with other settings "
                                 f"({diff}); run it again with the same --segmenter and --min-dice to finish it, or "
                                 f"remove {parts} to start over")
    parts.mkdir(parents=True, exist_ok=True)
    write_json_atomic(f, settings)


def _fraction_threshold(parts: Path, n_parts: int, fraction: float) -> tuple[float, int]:
    """The agreement of the last pair kept when the better ``fraction`` of every staged pair is kept, and how many
    pairs reach it (ties at the threshold included)."""
    import math

    import pyarrow.parquet as pq

    scores = np.concatenate([pq.read_table(parts / f"part-{i:05d}.parquet", columns=["agreement"])
                             .column("agreement").to_numpy() for i in range(n_parts)])
    want = max(1, math.ceil(fraction * len(scores)))
    thr = float(np.sort(scores)[::-1][want - 1])
    return thr, int((scores >= thr).sum())


def _repack(parts: Path, n_parts: int, writer, shard_size: int, min_dice: float | None = None) -> None:
    """Kept rows of all parts (those with agreement >= ``min_dice`` when given), in order, into
    data/train-XXXXX.parquet shards of ``shard_size`` rows."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = writer.shard_path(0).parent
    shutil.rmtree(data, ignore_errors=True)  # a killed earlier repack: start it over
    data.mkdir(parents=True)
    buf, k = None, 0  # rows read but not yet written

    def flush(rows):
        nonlocal k
        dst = writer.shard_path(k)
        tmp = dst.with_name(dst.name + ".tmp")
        pq.write_table(rows, tmp)
        os.replace(tmp, dst)
        k += 1

    for i in range(n_parts):
        t = pq.read_table(parts / f"part-{i:05d}.parquet")
        if min_dice is not None and t.num_rows:
            t = t.filter(pa.array(t.column("agreement").to_numpy() >= min_dice))
        buf = t if buf is None else pa.concat_tables([buf, t])
        while buf.num_rows >= shard_size:
            flush(buf.slice(0, shard_size))
            buf = buf.slice(shard_size)
    if buf is not None and buf.num_rows:
        flush(buf)
    shutil.rmtree(parts)
