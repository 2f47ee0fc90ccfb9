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
    ims, mks, _, _ = _rows(tmp_path / "syn", tmp_path / "c0")
    dice = _dice(tmp_path / "seg", ims, mks)
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


# generate --keep-agreeing: the filter inside generation, shard by shard


def _rows(path, cache):
    import datasets

    d = datasets.load_dataset(str(path), split="train", cache_dir=str(cache))
    return (np.stack([np.array(x) for x in d["image"]]), np.stack([np.array(x) for x in d["mask"]]), d["seed"],
            d["agreement"] if "agreement" in d.column_names else None)


def _dice(seg_dir, ims, mks):
    seg, _, _ = ds.load_segmenter(seg_dir)
    return ds.dice_iou(ds.predict(seg, ims.transpose(0, 3, 1, 2)), mks >= 128)[0]


def test_generate_keep_agreeing_keeps_agreeing_candidates_in_order(tiny_model_dir, tmp_path):
    """A shard's candidates are its unfiltered rows, then spares of their own seed stream: the kept rows are the
    agreeing ones, in order, pixel for pixel, each with its agreement; threshold 0 is the unfiltered dataset."""
    from fastsynth.sampling.pairs import spare_seed

    seg = _tiny_segmenter(tmp_path / "seg", seed=0)
    base = GenerateConfig(n=12, steps=3, batch_size=4, shard_size=6, backend="eager")
    generate(base, tmp_path / "all", model=str(tiny_model_dir), progress=False)
    ims, mks, seeds, _ = _rows(tmp_path / "all", tmp_path / "c0")
    dice = _dice(seg, ims, mks).astype(np.float32)  # compared as stored: the agreement column is float32
    thr = float(np.sort(dice)[len(dice) // 2])  # about half the rows pass
    assert 0 < (dice >= thr).sum() < len(dice), dice

    from dataclasses import replace

    s = generate(replace(base, keep_agreeing=str(seg), min_agreement=thr), tmp_path / "keep",
                 model=str(tiny_model_dir), progress=False)
    kims, kmks, kseeds, agree = _rows(tmp_path / "keep", tmp_path / "c1")
    assert len(kseeds) == 12 and s["candidates"] > 12 and len(set(kseeds)) == 12
    assert min(agree) >= thr and np.allclose(agree, _dice(seg, kims, kmks), atol=1e-6)
    for k in range(2):  # each shard starts with its own agreeing rows of the unfiltered run, in order
        own = [i for i in range(6 * k, 6 * k + 6) if dice[i] >= thr]
        got = kseeds[6 * k:6 * k + len(own)]
        assert got == [seeds[i] for i in own]
        assert np.array_equal(kims[6 * k:6 * k + len(own)], ims[own])
        spares = kseeds[6 * k + len(own):6 * k + 6]
        assert all(sd in {spare_seed(0, k, j) for j in range(200)} for sd in spares)
    m = __import__("json").loads((tmp_path / "keep" / "fastsynth.json").read_text())
    assert m["keep_agreeing"]["min_agreement"] == thr and m["keep_agreeing"]["scored_at"] == 16
    assert m["keep_agreeing_run"]["kept"] == 12 and m["keep_agreeing_run"]["candidates"] >= 12 + 1
    assert "label-agreement filter" in (tmp_path / "keep" / "README.md").read_text()

    generate(replace(base, keep_agreeing=str(seg), min_agreement=0.0), tmp_path / "zero", model=str(tiny_model_dir),
             progress=False)
    zims, zmks, zseeds, _ = _rows(tmp_path / "zero", tmp_path / "c2")
    assert zseeds == seeds and np.array_equal(zims, ims) and np.array_equal(zmks, mks)


def test_generate_keep_agreeing_resumes_refuses_and_reads_the_model_default(tiny_model_dir, tmp_path, monkeypatch):
    import json
    import shutil
    from dataclasses import replace

    import fastsynth.runtime.agreement as flt

    seg = _tiny_segmenter(tmp_path / "seg", seed=0)
    cfg = GenerateConfig(n=4, steps=3, batch_size=4, shard_size=2, backend="eager", keep_agreeing=str(seg),
                         min_agreement=0.0)
    generate(cfg, tmp_path / "a", model=str(tiny_model_dir), progress=False)
    generate(replace(cfg, n=6), tmp_path / "a", model=str(tiny_model_dir), progress=False)  # extended
    assert json.loads((tmp_path / "a" / "fastsynth.json").read_text())["keep_agreeing_run"]["shards_counted"] == 3
    with pytest.raises(FastsynthError, match="keep_agreeing"):  # another threshold: other rows, refused
        generate(replace(cfg, n=6, min_agreement=0.3), tmp_path / "a", model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="--mode pairs"):
        generate(replace(cfg, mode="from-masks"), tmp_path / "b", model=str(tiny_model_dir), masks=str(tmp_path),
                 progress=False)
    with pytest.raises(FastsynthError, match="between 0 and 1"):
        generate(replace(cfg, min_agreement=1.5), tmp_path / "b", model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="threshold of --keep-agreeing"):
        generate(replace(cfg, keep_agreeing=None), tmp_path / "b", model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="not a segmenter folder"):
        generate(replace(cfg, keep_agreeing=str(tmp_path)), tmp_path / "b", model=str(tiny_model_dir),
                 progress=False)
    assert not (tmp_path / "b").exists()

    # nothing agrees: a clear error once enough candidates were drawn, no shard half-written
    monkeypatch.setattr(flt.AgreementScorer, "__call__", lambda self, im, mk: np.zeros(len(im), np.float32))
    monkeypatch.setattr("fastsynth.pipeline.KEEP_MIN_CANDIDATES", 8)
    with pytest.raises(FastsynthError, match="only 0 of 8 candidates"):
        generate(replace(cfg, min_agreement=0.5), tmp_path / "c", model=str(tiny_model_dir), progress=False)
    assert not list((tmp_path / "c" / "data").glob("*")) if (tmp_path / "c" / "data").exists() else True
    monkeypatch.undo()

    # a model that ships its filter segmenter: used unless the user says otherwise
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    shutil.copytree(seg, model / "filter-segmenter")
    meta = json.loads((model / "fastsynth.json").read_text())
    meta["generate_defaults"] = {"pairs": {"keep_agreeing": "filter-segmenter", "min_agreement": 0.0}}
    (model / "fastsynth.json").write_text(json.dumps(meta))
    plain = GenerateConfig(n=2, steps=3, batch_size=2, shard_size=2, backend="eager")
    generate(plain, tmp_path / "d", model=str(model), progress=False)
    m = json.loads((tmp_path / "d" / "fastsynth.json").read_text())
    assert m["keep_agreeing_run"]["segmenter"] == "the model's own" and m["keep_agreeing"]["min_agreement"] == 0.0
    generate(replace(plain, keep_agreeing="none"), tmp_path / "e", model=str(model), progress=False)
    assert "keep_agreeing" not in json.loads((tmp_path / "e" / "fastsynth.json").read_text())


def test_bundle_ships_a_filter_segmenter_only_if_it_never_saw_held_out_pairs(tiny_model_dir, tmp_path):
    import json
    import shutil

    from fastsynth.models.bundle import bundle

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "split.json").write_text(json.dumps({"seed": 0, "test_fraction": 0.25, "train": ["a", "b", "c"],
                                                  "test": ["d"]}))
    seg = _tiny_segmenter(tmp_path / "seg", seed=0)
    meta = json.loads((seg / "fastsynth.json").read_text())
    (seg / "fastsynth.json").write_text(json.dumps({**meta, "real_train_stems": ["a", "b", "d"]}))
    with pytest.raises(SystemExit, match="holds out"):
        bundle(str(model), dest=tmp_path / "out", filter_segmenter=str(seg))
    (seg / "fastsynth.json").write_text(json.dumps({**meta, "real_train_stems": ["a", "b", "c"]}))
    out = bundle(str(model), dest=tmp_path / "out", filter_segmenter=str(seg),
                 generate_defaults={"pairs": {"min_agreement": 0.6}})
    shipped = json.loads((out / "fastsynth.json").read_text())["generate_defaults"]["pairs"]
    assert shipped == {"min_agreement": 0.6, "keep_agreeing": "filter-segmenter"}
    smeta = json.loads((out / "filter-segmenter" / "fastsynth.json").read_text())
    assert "real_train_stems" not in smeta and smeta["real_train"].startswith("3 pairs")
    assert ds.load_segmenter(out / "filter-segmenter")[1].resolution == 16


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_generate_keep_agreeing_on_openvino_scores_on_a_segmenter_backend(tiny_model_dir, tmp_path):
    """OpenVINO runs the denoiser only: the filter's segmenter then runs on what auto picks, and the rows are the
    same as with the segmenter on eager."""
    import json

    seg = _tiny_segmenter(tmp_path / "seg", seed=0)
    cfg = GenerateConfig(n=4, steps=3, batch_size=4, shard_size=4, backend="openvino", precision="fp32",
                         keep_agreeing=str(seg), min_agreement=0.0)
    generate(cfg, tmp_path / "ov", model=str(tiny_model_dir), progress=False)
    m = json.loads((tmp_path / "ov" / "fastsynth.json").read_text())
    assert m["backend"] == "openvino" and m["keep_agreeing_run"]["backend"] in ("onnx", "eager")
    assert m["n"] == 4 and m["complete"]


def test_generate_says_how_many_candidates_it_drew(tiny_model_dir, tmp_path, capsys):
    """Candidates come in whole batches: the line printed counts every one drawn (3 pairs at batch size 4: 4), the
    card the ones up to the last kept pair (3 of 3 at --min-agreement 0), so neither claims a rejection that was not."""
    from fastsynth.cli import main

    seg = _tiny_segmenter(tmp_path / "seg", seed=0)
    assert main(["generate", "--model", str(tiny_model_dir), "--n", "3", "--steps", "3", "--batch-size", "4",
                 "--backend", "eager", "--keep-agreeing", str(seg), "--min-agreement", "0", "--out",
                 str(tmp_path / "g"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "generated 3 pairs (filtered: 4 candidates drawn in batches)" in out
    assert "3 kept of 3 candidates (100%)" in (tmp_path / "g" / "README.md").read_text()
