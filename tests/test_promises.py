"""Generate, filter and evaluate keep their promises (issue 9, points 10-13)."""

import json
import sys

import pytest

from fastsynth.config import GenerateConfig
from fastsynth.errors import FastsynthError
from fastsynth.pipeline import generate

from conftest import make_pair_folder
from test_metrics import make_synth_dataset

TINY = dict(n=2, steps=2, batch_size=2, shard_size=2, backend="eager")


def test_other_format_into_an_existing_folder_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "ds"
    generate(GenerateConfig(**TINY), out, model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="format: existing 'parquet' vs now 'png'"):
        generate(GenerateConfig(**TINY, format="png"), out, model=str(tiny_model_dir), progress=False)
    png = tmp_path / "png"
    generate(GenerateConfig(**TINY, format="png"), png, model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="format: existing 'png' vs now 'parquet'"):
        generate(GenerateConfig(**TINY), png, model=str(tiny_model_dir), progress=False)
    assert json.loads((out / "fastsynth.json").read_text())["format"] == "parquet"


def test_generate_again_keeps_the_evaluation_in_the_card(tiny_model_dir, tmp_path):
    from fastsynth.publish.card import EVAL_KEY, START, split_card, update_card

    out = tmp_path / "ds"
    generate(GenerateConfig(**TINY), out, model=str(tiny_model_dir), progress=False)
    update_card(out / "README.md", {"n_synthetic": 2, "masks": {"synthetic": {"area_fraction_mean": 0.1,
                                                                              "components_mean": 1.0}}})
    before = split_card((out / "README.md").read_text())[0][EVAL_KEY]
    generate(GenerateConfig(**TINY), out, model=str(tiny_model_dir), progress=False)  # nothing left: re-renders
    meta, body = split_card((out / "README.md").read_text())
    assert meta[EVAL_KEY] == before and START in body and "mask area fraction" in body
    assert meta["fastsynth"]["mode"] == "pairs"  # and it is still the generated card


def test_filter_refuses_parts_of_a_run_with_other_settings(tmp_path):
    from fastsynth.metrics.filter import _check_parts

    parts = tmp_path / "out" / ".filter-parts"
    a = {"segmenter_sha256": "a" * 64, "min_dice": 0.5}
    _check_parts(parts, a)
    (parts / "part-00000.parquet").write_bytes(b"x")
    _check_parts(parts, a)  # the same settings: resume
    with pytest.raises(FastsynthError, match="other settings \\(min_dice: earlier 0.5 vs now 0.7\\).*--min-dice"):
        _check_parts(parts, {**a, "min_dice": 0.7})
    (parts / "settings.json").unlink()  # parts of a run that recorded nothing
    with pytest.raises(FastsynthError, match="unknown"):
        _check_parts(parts, a)


def _run(argv, capsys):
    from fastsynth.cli import main

    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_evaluate_masks_without_scipy_says_what_to_install(tmp_path, monkeypatch, capsys):
    ds = make_synth_dataset(tmp_path / "ds", n=4, shard_size=4)
    data = make_pair_folder(tmp_path / "data", n=6, size=(24, 24))
    for m in ("scipy", "scipy.ndimage", "scipy.stats", "scipy.optimize", "scipy.spatial.distance"):
        monkeypatch.setitem(sys.modules, m, None)  # as after `pip install -e ".[onnx]"`
    code, err = _run(["evaluate", str(ds), "--real", str(data), "--metrics", "masks"], capsys)
    assert code == 2 and "Traceback" not in err and "pip install 'fastsynth[eval]'" in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1


@pytest.mark.parametrize("name", ["split.json", "config.json"])
def test_corrupt_run_files_give_one_clear_line(tmp_path, capsys, name):
    ds = make_synth_dataset(tmp_path / "ds", n=4, shard_size=4)
    data = make_pair_folder(tmp_path / "data", n=6, size=(24, 24))
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"train": ["case000"], "test": ["case001"]}))
    (run / "config.json").write_text(json.dumps({"data": str(data)}))
    (run / name).write_text("{not json")
    code, err = _run(["evaluate", str(ds), "--real", str(run), "--metrics", "masks"], capsys)
    assert code == 2 and "Traceback" not in err and f"{name}: corrupt" in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1


def test_train_resume_with_corrupt_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{oops")
    data = make_pair_folder(tmp_path / "data", n=4, size=(24, 24))
    code, err = _run(["train", "--data", str(data), "--out", str(run), "--resume", "--steps", "1",
                      "--preset", "tiny", "--resolution", "16"], capsys)
    assert code == 2 and "config.json: corrupt run config" in err and "Traceback" not in err
