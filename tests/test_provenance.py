"""Provenance from the model, never hard-coded: a dataset card describes the generating model's training data
(name, licence, citation) as its metadata records it, and holds no local paths."""

import json
import re

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
