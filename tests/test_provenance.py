"""Provenance from the model, never hard-coded: a dataset card describes the generating model's training data
(name, licence, citation) as its metadata records it, and holds no local paths."""

import json
import re
from pathlib import Path

import pytest

from fastsynth.config import GenerateConfig
from fastsynth.data.provenance import data_provenance, model_data_provenance
from fastsynth.dataset import render_card
from fastsynth.pipeline import generate, public_model_info

from test_metrics import make_synth_dataset


def _card_for(meta, tmp_path, model="runs/x/model"):
    m = json.loads((make_synth_dataset(tmp_path / "ds", n=2, shard_size=2) / "fastsynth.json").read_text())
    m["model"] = public_model_info(model, meta)
    return render_card(m), m


def test_card_names_the_models_own_training_data(tmp_path):
    meta = {"training_data": {"name": "HC18 fetal head ultrasound", "license": "cc-by-4.0",
                              "citation": "van den Heuvel et al., PLOS ONE 2018", "url": "https://zenodo.org/x"},
            "training": {"data": "../shared/data/hc18-ultrasound", "n_train": 900, "steps_done": 10,
                         "command": "fastsynth train --data /home/someone/hc18 --out runs/x"}}
    card, m = _card_for(meta, tmp_path)
    assert "Kvasir" not in card and "polyp" not in card.lower()
    assert "license: cc-by-4.0" in card and "HC18 fetal head ultrasound" in card and "PLOS ONE 2018" in card
    assert "../" not in card and "/home/" not in card and "../" not in json.dumps(m)
    assert m["model"]["path"] == "model" and "command" not in m["model"]["training"]
    assert "https://github.com/)" not in card  # no placeholder link


def test_grey_label_map_card_names_the_models_own_training_data(tmp_path):
    """The card of a grey / label-map dataset keeps the model's provenance (it said "trained on `?`" before)."""
    from fastsynth.data.modality import Modality

    meta = {"training_data": {"name": "Sunnybrook LV", "license": "cc0-1.0", "citation": None, "url": None},
            "training": {"data": "sunnybrook-lv", "n_train": 9}}
    m = json.loads((make_synth_dataset(tmp_path / "ds", n=2, shard_size=2) / "fastsynth.json").read_text())
    m["model"] = public_model_info("runs/x/model", meta)
    m["data"] = Modality(channels=1, class_names=("background", "cavity", "wall")).to_dict()
    card = render_card(m)
    assert "label maps" in card and "trained on Sunnybrook LV (licence: cc0-1.0)" in card and "`?`" not in card


def test_unknown_licence_is_said_not_guessed(tmp_path):
    card, _ = _card_for({"training": {"data": "/data/kvasir-seg", "n_train": 9}}, tmp_path)
    assert "license: other" in card and "licence unknown" in card and "Kvasir-SEG" not in card
    card, _ = _card_for({}, tmp_path)
    assert "does not name its training data" in card


def test_bundled_model_records_kvasir(tmp_path):
    from fastsynth.models import load_model

    _, meta = load_model(None)
    td = model_data_provenance(meta)
    assert td["name"] == "Kvasir-SEG" and td["license"] == "cc-by-4.0" and "Jha" in td["citation"]
    card, _ = _card_for(meta, tmp_path, model=None)
    assert "license: cc-by-4.0" in card and "trained on Kvasir-SEG (licence: cc-by-4.0)" in card
    assert "shared/data" not in card


def test_data_provenance_reads_the_data_card(tmp_path):
    d = tmp_path / "mydata"
    d.mkdir()
    assert data_provenance(d) == {"name": "mydata", "license": None, "citation": None, "url": None}
    (d / "README.md").write_text("---\npretty_name: My polyps\nlicense: cc-by-nc-4.0\ncitation: Me 2024\n---\nx\n")
    assert data_provenance(d) == {"name": "My polyps", "license": "cc-by-nc-4.0", "citation": "Me 2024",
                                  "url": None}


def test_generated_dataset_has_no_local_paths(tiny_model_dir, tmp_path):
    out = tmp_path / "gen"
    generate(GenerateConfig(n=2, steps=2, batch_size=2, shard_size=2, backend="eager"), out,
             model=str(tiny_model_dir), progress=False)
    card, manifest = (out / "README.md").read_text(), (out / "fastsynth.json").read_text()
    for text in (card, manifest):
        assert str(tmp_path) not in text and not re.search(r"(^|[\s`'\"])\.\./", text)
    assert "license: other" in card and "Kvasir" not in card  # the tiny model's data has no licence on record


def test_recorded_command_has_no_local_paths(tiny_model_dir, tmp_path, monkeypatch):
    import sys

    from fastsynth.cli import main

    out = tmp_path / "gen2"
    argv = ["generate", "--n", "2", "--steps", "2", "--batch-size", "2", "--shard-size", "2", "--backend", "eager",
            "--model", str(tiny_model_dir), "--out", str(out), "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["fastsynth"] + argv)
    assert main(argv) == 0
    m = json.loads((out / "fastsynth.json").read_text())
    assert m["command"].startswith("fastsynth generate --n 2") and str(tmp_path) not in m["command"]
    assert str(tmp_path) not in (out / "README.md").read_text()


# a path that says where something lies on this machine: ../x, ~/x or /x (not a URL, not a relative data/x)
LOCAL_PATH = re.compile(r"(?<![\w.:/~\-])(?:~|\.\.)?/[\w.\-]+")


def _local_paths(text: str, tmp_path=None) -> list[str]:
    found = LOCAL_PATH.findall(text) + re.findall(r"\.\./", text)
    return found + ([str(tmp_path)] if tmp_path is not None and str(tmp_path) in text else [])


def _run_cli(argv, monkeypatch):
    import sys

    from fastsynth.cli import main

    monkeypatch.setattr(sys, "argv", ["fastsynth"] + argv)  # what invoked_command records
    assert main(argv) == 0


def test_models_record_their_data_by_name_only(tmp_path, monkeypatch, capsys):
    """Issue 9, point 7: a model trained from ``../src/polyps`` (relative to a checkout) or from an absolute path,
    and a student distilled from it, hold no ``..`` or absolute path in fastsynth.json or README.md: the data by
    its folder name (``--data polyps`` in the recorded command). ``--real MODEL`` and distill still find the data:
    through the run's config.json, or by name in $FASTSYNTH_DATA once the model is elsewhere."""
    import shutil

    from conftest import make_pair_folder
    from fastsynth.cli import main
    from fastsynth.errors import DataError
    from fastsynth.metrics.io import resolve_real

    data = make_pair_folder(tmp_path / "src" / "polyps", n=6)
    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)
    tiny = ["--preset", "tiny", "--resolution", "16", "--steps", "2", "--batch-size", "4", "--no-progress"]
    _run_cli(["train", "--data", "../src/polyps", "--out", "runs/rel"] + tiny, monkeypatch)
    _run_cli(["train", "--data", str(data), "--out", str(tmp_path / "abs"), "--init-from", "runs/rel"] + tiny,
             monkeypatch)
    _run_cli(["distill", "--model", str(tmp_path / "abs"), "--out", str(tmp_path / "pd"), "--teacher-steps", "2",
              "--student-steps", "1", "--steps-per-round", "1", "--batch-size", "2", "--device", "cpu",
              "--no-progress"], monkeypatch)
    models = [work / "runs/rel/model", tmp_path / "abs/model", tmp_path / "pd/model"]
    for d in models:
        for name in ("fastsynth.json", "README.md"):
            text = (d / name).read_text()
            assert _local_paths(text, tmp_path) == [], f"{d / name}: {_local_paths(text, tmp_path)}"
    for d in models[:2]:
        t = json.loads((d / "fastsynth.json").read_text())["training"]
        assert t["data"] == "polyps" and " --data polyps " in t["command"], t
    assert json.loads((models[1] / "fastsynth.json").read_text())["training"]["init"]["from"] == "rel"
    dist = json.loads((models[2] / "fastsynth.json").read_text())["distillation"]
    assert dist["data"] == "polyps" and dist["teacher"] == "abs" and "--model abs " in dist["command"]
    assert main(["info", "--model", str(models[2])]) == 0
    out = capsys.readouterr().out
    assert "../" not in out and "polyps" in out
    # the data is still found: through the run's config.json, then by name once the model has moved
    assert Path(resolve_real(models[0])[1].root).resolve() == data.resolve()
    moved = shutil.copytree(models[1], tmp_path / "elsewhere" / "mymodel")
    monkeypatch.delenv("FASTSYNTH_DATA", raising=False)
    with pytest.raises(DataError, match="FASTSYNTH_DATA"):
        resolve_real(moved)
    monkeypatch.setenv("FASTSYNTH_DATA", str(tmp_path / "src"))
    assert Path(resolve_real(moved)[1].root).resolve() == data.resolve()


def test_bundled_models_hold_no_local_paths():
    from fastsynth.models.denoiser import BUNDLED_MODELS

    for key, d in BUNDLED_MODELS.items():
        for name in ("fastsynth.json", "README.md", "config.json", "split.json"):
            if (d / name).exists():
                assert _local_paths((d / name).read_text()) == [], f"{d / name}: {_local_paths((d / name).read_text())}"
        want = {"bundled-ultrasound": "hc18-ultrasound", "bundled-hippocampus": "msd-hippocampus"}.get(key, "kvasir-seg")
        assert json.loads((d / "fastsynth.json").read_text())["training"]["data"] == want
