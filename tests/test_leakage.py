"""Test leakage (issue 9, point 1): synthetic rows made from held-out stems never train the downstream
segmenters silently; generate warns when its conditioning folder holds the model's held-out stems."""

import json
import shutil

import pytest

from fastsynth.errors import FastsynthError
from fastsynth.metrics.leakage import check_leakage, heldout_sources, split_fingerprint

from conftest import make_pair_folder
from test_metrics import make_synth_dataset


def test_heldout_sources_is_pure():
    assert heldout_sources(["a", "", "b", "c"], ["b", "x"]).tolist() == [False, False, True, False]
    said = []
    keep = check_leakage(["a", "b"], {"mode": "from-masks"}, ["b"], None, drop=True, say=said.append)
    assert keep.tolist() == [True, False] and "left out 1 of 2" in said[0]
    with pytest.raises(FastsynthError, match="1 of 2 synthetic rows were made \\(from-masks\\) from held-out"):
        check_leakage(["a", "b"], {"mode": "from-masks"}, ["b"], None)


def _model_with_split(tmp_path, size: int):
    """A real folder of 6 pairs and a 'model' folder whose split holds out case004 and case005."""
    data = make_pair_folder(tmp_path / "data", n=6, size=(size, size))
    model = tmp_path / "model"
    model.mkdir()
    split = {"train": [f"case{i:03d}" for i in range(4)], "test": ["case004", "case005"]}
    (model / "split.json").write_text(json.dumps(split))
    (model / "fastsynth.json").write_text(json.dumps({"training": {"data": str(data)}}))
    return data, model, split


@pytest.fixture
def evaluation(tmp_path, monkeypatch):
    """A real folder, a 'model' folder whose split holds out case004 and case005, and a stand-in benchmark that
    records the synthetic rows it is given (no segmenter is trained)."""
    data, model, split = _model_with_split(tmp_path, 24)
    got = {}

    def fake_benchmark(cfg, train, train_stems, synth, sources, test_sets, protocols, low_n, **kw):
        got.update(n=len(synth), sources=list(sources))
        return {"runs": {}, "settings": {}}

    monkeypatch.setattr("fastsynth.metrics.downstream.run_benchmark", fake_benchmark)
    return data, model, split, got


def _synth(tmp_path, sources, model_split):
    ds = make_synth_dataset(tmp_path / "syn", n=len(sources), shard_size=4, sources=sources)
    m = json.loads((ds / "fastsynth.json").read_text())
    (ds / "fastsynth.json").write_text(json.dumps({**m, "mode": "from-masks", "model_split": model_split}))
    return ds


def test_evaluate_refuses_or_drops_rows_from_heldout_stems(tmp_path, evaluation):
    from fastsynth.metrics.suite import evaluate

    data, model, split, got = evaluation
    sources = ["case000", "case004", "case001", "case005", "case002", "case003"]
    ds = _synth(tmp_path, sources, split_fingerprint(split["test"]))
    kw = dict(metrics="masks", downstream={"protocols": ("real", "synthetic")}, out_dir=tmp_path / "ev")
    with pytest.raises(FastsynthError, match="2 of 6 synthetic rows .* held-out test stems.*--drop-leaking"):
        evaluate(ds, model, **kw)
    assert not got  # nothing was trained
    said = []
    r = evaluate(ds, model, log=said.append, **{**kw, "downstream": {**kw["downstream"], "drop_leaking": True}})
    assert got["n"] == 4 and "case004" not in got["sources"] and r["n_dropped_leaking"] == 2
    assert any("left out 2 of 6" in s for s in said)
    # the real-only protocol does not train on synthetic rows: nothing to check
    got.clear()
    evaluate(ds, model, **{**kw, "downstream": {"protocols": ("real",)}})
    assert got["n"] == 6


def test_evaluate_refuses_a_model_with_another_split(tmp_path, evaluation):
    from fastsynth.metrics.suite import evaluate

    data, model, split, got = evaluation
    ds = _synth(tmp_path, [""] * 4, split_fingerprint(["case000"]))  # the model held out something else
    with pytest.raises(FastsynthError, match="held out 1 stems, but this evaluation's held-out set is another"):
        evaluate(ds, model, metrics="masks", downstream={"protocols": ("synthetic",)}, out_dir=tmp_path / "ev")
    with pytest.raises(FastsynthError, match="another split"):  # a plain folder: a seeded split, not the model's
        evaluate(ds, data, metrics="masks", downstream={"protocols": ("synthetic",)}, out_dir=tmp_path / "ev")
    assert not got


def test_generate_warns_about_heldout_masks(tiny_model_dir, tmp_path, capsys):
    from fastsynth.config import GenerateConfig
    from fastsynth.pipeline import generate

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "split.json").write_text(json.dumps({"train": ["case000"], "test": ["case001", "case002"]}))
    masks = make_pair_folder(tmp_path / "d", n=4, size=(24, 24)) / "masks"
    generate(GenerateConfig(n=2, mode="from-masks", steps=2, batch_size=2, shard_size=2, backend="eager"),
             tmp_path / "out", model=str(model), masks=str(masks), progress=False)
    err = capsys.readouterr().err
    assert "warning: 2 of the 4 stems in --masks are held out by the model's split.json" in err
    m = json.loads((tmp_path / "out" / "fastsynth.json").read_text())
    assert m["model_split"] == split_fingerprint(["case001", "case002"])


def test_the_judge_at_its_own_resolution(tmp_path, monkeypatch):
    """--seg-resolution: real pairs read at it, synthetic pairs resized to it (masks stay binary), so data of two
    resolutions is judged on the same real test images."""
    import numpy as np

    from fastsynth.metrics.suite import evaluate

    data, model, _ = _model_with_split(tmp_path, 48)
    got = {}

    def fake_benchmark(cfg, train, train_stems, synth, sources, test_sets, protocols, low_n, **kw):
        got.update(res=cfg.resolution, train=train.shape, synth=synth.shape, test=test_sets["heldout"].shape,
                   masks=np.unique(synth[:, 3]))
        return {"runs": {}, "settings": {}}

    monkeypatch.setattr("fastsynth.metrics.downstream.run_benchmark", fake_benchmark)
    ds = make_synth_dataset(tmp_path / "syn", n=6, res=16, shard_size=4)
    r = evaluate(ds, model, metrics="masks", downstream={"protocols": ("real", "synthetic"), "resolution": 32},
                 out_dir=tmp_path / "ev")
    assert got["res"] == 32 and got["train"][-1] == 32 and got["test"][-1] == 32 and got["synth"][-2:] == (32, 32)
    assert set(got["masks"].tolist()) <= {0, 255} and "segmenter_resize" in r["reference"]
    assert r["resolution"] == 16  # the data's own metrics stay at its resolution
    got.clear()
    evaluate(ds, model, metrics="masks", downstream={"protocols": ("real",)}, out_dir=tmp_path / "ev2")
    assert got["res"] == 16 and got["test"][-1] == 16
