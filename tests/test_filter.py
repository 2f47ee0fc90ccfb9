import importlib.util

import numpy as np
import pytest

pytest.importorskip("segmentation_models_pytorch")

from fastsynth.config import GenerateConfig
from fastsynth.errors import FastsynthError
from fastsynth.metrics import downstream as ds
from fastsynth.metrics.filter import filter_dataset
from fastsynth.pipeline import generate


def test_filter_keeps_agreeing_pairs_and_records_scores(tiny_model_dir, tmp_path):
    import datasets

    generate(GenerateConfig(n=10, steps=3, batch_size=5, shard_size=4, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    _tiny_segmenter(tmp_path / "seg", seed=0)
    seg, _, _ = ds.load_segmenter(tmp_path / "seg")

    syn = datasets.load_dataset(str(tmp_path / "syn"), split="train", cache_dir=str(tmp_path / "c0"))
    ims = np.stack([np.array(x) for x in syn["image"]]).transpose(0, 3, 1, 2)
    mks = np.stack([np.array(x) for x in syn["mask"]])
    dice, _ = ds.dice_iou(ds.predict(seg, ims), mks >= 128)
    thr = float(np.median(dice))

    info = filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "flt", thr, progress=False,
                          backend="eager")
    out = datasets.load_dataset(str(tmp_path / "flt"), split="train", cache_dir=str(tmp_path / "c1"))
    assert info["total"] == 10 and info["kept"] == int((dice >= thr).sum()) == out.num_rows
    assert out["index"] == [i for i in range(10) if dice[i] >= thr]
    assert np.allclose(out["agreement"], dice[dice >= thr], atol=1e-6)
    assert "Label-consistency filter" in (tmp_path / "flt" / "README.md").read_text()
    # an ordinary dataset: standard shards of the source's shard size, publishable
    from fastsynth.publish.hub import validate_dataset

    assert validate_dataset(tmp_path / "flt")["rows"] == info["kept"]
    assert not (tmp_path / "flt" / ".filter-parts").exists()
    with pytest.raises(FastsynthError, match="between 0 and 1"):
        filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "x", 1.5, progress=False)


HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None


def _tiny_segmenter(path, resolution=16, seed=None):
    import torch

    cfg = ds.SegConfig(arch="unet", encoder="resnet18", encoder_weights=None, encoder_depth=3,
                       decoder_channels=(16, 8, 4), resolution=resolution)
    if seed is not None:
        torch.manual_seed(seed)  # the same segmenter whatever ran before
    model, _ = ds.build_model(cfg)
    return ds.save_segmenter(model, cfg, path, {"protocol": "real"})


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnxscript not installed")
def test_segmenter_exports_with_parity_and_filters_on_onnx(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """fastsynth export takes a segmenter folder; the filter on ONNX Runtime keeps what eager keeps."""
    import json

    import torch

    from fastsynth.cli import main
    from fastsynth.runtime import make_segmenter_fn

    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    seg = _tiny_segmenter(tmp_path / "seg")
    assert main(["export", "--model", str(seg), "--format", "onnx", "--out", str(tmp_path / "exp"),
                 "--device", "cpu", "--batch-size", "3"]) == 0
    rep = json.loads((tmp_path / "exp" / "parity.json").read_text())
    assert rep["kind"] == "segmenter" and rep["parity"]["ok"] and rep["inputs"] == {"image": ["batch", 3, 16, 16]}
    assert (tmp_path / "exp" / "segmenter.onnx").exists()

    model, cfg, _ = ds.load_segmenter(seg)
    x = torch.randn(5, 3, 16, 16)
    ref = make_segmenter_fn(model, 16, "eager")(x)
    onx = make_segmenter_fn(ds.load_segmenter(seg)[0], 16, "onnx", model_sha="s" * 64)(x)
    assert ref.shape == onx.shape == (5, 1, 16, 16) and torch.allclose(ref, onx, atol=1e-4)

    generate(GenerateConfig(n=6, steps=2, batch_size=6, shard_size=6, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    a = filter_dataset(tmp_path / "syn", seg, tmp_path / "f_eager", 0.0, progress=False, backend="eager")
    b = filter_dataset(tmp_path / "syn", seg, tmp_path / "f_onnx", 0.0, progress=False, backend="onnx")
    assert a["backend"] == "eager" and b["backend"] == "onnx" and a["kept"] == b["kept"] == 6
    import pyarrow.parquet as pq

    sa = pq.read_table(next((tmp_path / "f_eager").rglob("*.parquet"))).column("agreement").to_numpy()
    sb = pq.read_table(next((tmp_path / "f_onnx").rglob("*.parquet"))).column("agreement").to_numpy()
    assert np.allclose(sa, sb, atol=0.02)


def test_repack_skips_empty_parts_and_keeps_order(tmp_path):
    """Source shards that keep nothing leave no empty shard; rows keep their order across shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fastsynth.dataset import DatasetWriter
    from fastsynth.metrics.filter import _repack

    parts = tmp_path / "out" / ".filter-parts"
    parts.mkdir(parents=True)
    start = 0
    for i, n in enumerate([0, 3, 5, 0, 2]):
        pq.write_table(pa.table({"index": list(range(start, start + n))}, schema=pa.schema([("index", pa.int64())])),
                       parts / f"part-{i:05d}.parquet")
        start += n
    writer = DatasetWriter(tmp_path / "out", "parquet")
    _repack(parts, 5, writer, 4)
    shards = sorted((tmp_path / "out" / "data").glob("train-*.parquet"))
    assert [pq.read_table(f).num_rows for f in shards] == [4, 4, 2]
    assert sum((pq.read_table(f).column("index").to_pylist() for f in shards), []) == list(range(10))
    assert not parts.exists()


def test_filter_refuses_a_foreign_out_folder(tiny_model_dir, tmp_path):
    generate(GenerateConfig(n=2, steps=2, batch_size=2, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    seg = _tiny_segmenter(tmp_path / "seg")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FastsynthError, match="not an earlier filter output"):
        filter_dataset(tmp_path / "syn", seg, tmp_path / "mine", 0.5, progress=False, backend="eager")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_filter_scores_at_the_segmenters_resolution(tiny_model_dir, tmp_path):
    """A segmenter trained at another resolution (the judge's 128² segmenter filtering 256² pairs) scores the
    pairs resized as evaluate resizes them; the rows kept are the originals, at their own resolution."""
    import datasets

    from fastsynth.data.pairs import resize_pairs

    generate(GenerateConfig(n=8, steps=3, batch_size=4, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    _tiny_segmenter(tmp_path / "seg", resolution=32, seed=1)
    seg, _, _ = ds.load_segmenter(tmp_path / "seg")
    syn = datasets.load_dataset(str(tmp_path / "syn"), split="train", cache_dir=str(tmp_path / "c0"))
    pairs = np.concatenate([np.stack([np.array(x) for x in syn["image"]]).transpose(0, 3, 1, 2),
                            np.stack([np.array(x) for x in syn["mask"]])[:, None]], 1)
    assert pairs.shape[-1] == 16
    big = resize_pairs(pairs, 32)
    assert big.shape == (8, 4, 32, 32) and set(np.unique(big[:, 3])) <= {0, 255}
    dice, _ = ds.dice_iou(ds.predict(seg, big[:, :3]), big[:, 3] >= 128)
    thr = float(np.median(dice))
    info = filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "flt", thr, progress=False,
                          backend="eager")
    out = datasets.load_dataset(str(tmp_path / "flt"), split="train", cache_dir=str(tmp_path / "c1"))
    assert info["scored_at"] == 32 and info["kept"] == int((dice >= thr).sum()) == out.num_rows
    assert np.allclose(out["agreement"], dice[dice >= thr], atol=1e-6)
    assert np.array(out["image"][0]).shape == (16, 16, 3)  # the original pairs, not the resized ones


def test_keep_fraction_keeps_the_better_part_in_order(tiny_model_dir, tmp_path, capsys):
    """--keep-fraction 0.5: the pairs that agree best (ties at the threshold kept), in their original order; the
    threshold is the agreement of the last pair kept. Both options, or a fraction out of range: one clear line."""
    import datasets

    from fastsynth.cli import main

    generate(GenerateConfig(n=10, steps=3, batch_size=5, shard_size=4, backend="eager"), tmp_path / "syn",
             model=str(tiny_model_dir), progress=False)
    _tiny_segmenter(tmp_path / "seg", seed=2)
    info = filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "all", 0.0, progress=False, backend="eager")
    scores = np.array(datasets.load_dataset(str(tmp_path / "all"), split="train",
                                            cache_dir=str(tmp_path / "c0"))["agreement"])
    assert info["kept"] == 10
    thr = np.sort(scores)[::-1][2]  # the 3rd best of 10 at a fraction of 0.3
    info = filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "best", progress=False, backend="eager",
                          keep_fraction=0.3)
    out = datasets.load_dataset(str(tmp_path / "best"), split="train", cache_dir=str(tmp_path / "c1"))
    assert info["min_dice"] == pytest.approx(thr) and info["keep_fraction"] == 0.3
    assert out["index"] == [i for i in range(10) if scores[i] >= thr] and out.num_rows == info["kept"] >= 3
    assert "the better 30%" in (tmp_path / "best" / "README.md").read_text()
    with pytest.raises(FastsynthError, match="either --min-dice or --keep-fraction"):
        filter_dataset(tmp_path / "syn", tmp_path / "seg", tmp_path / "x", 0.5, keep_fraction=0.5, progress=False)
    assert main(["filter", str(tmp_path / "syn"), "--segmenter", str(tmp_path / "seg"), "--keep-fraction", "1.5",
                 "--out", str(tmp_path / "y")]) == 2
    assert "--keep-fraction 1.5" in capsys.readouterr().err and not (tmp_path / "y").exists()
