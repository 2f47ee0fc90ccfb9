"""Housekeeping a newcomer trips on: no stray temporaries in the checkout, imports that only point down."""

import ast
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fastsynth"


def test_no_onnx_temporaries_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert not [f for f in tracked if f.endswith(".onnx")], "ONNX files are build outputs, not sources"
    ignored = subprocess.run(["git", "check-ignore", "-q", "sym_shape_infer_temp.onnx"], cwd=ROOT)
    assert ignored.returncode == 0, ".gitignore must ignore sym_shape_infer_temp.onnx"


def test_onnx_export_keeps_the_working_directory_clean(tmp_path, monkeypatch):
    """Whatever the exporter (or ONNX Runtime's shape inference) drops into the working directory stays in a
    temporary folder that is removed afterwards."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from fastsynth.runtime import onnx as ox

    def fake_export(module, args, f, **kw):
        Path("sym_shape_infer_temp.onnx").write_bytes(b"junk")  # what ORT's symbolic shape inference does
        Path(f).write_bytes(b"model")

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(torch.onnx, "export", fake_export)
    out = ox._export(torch.nn.Identity(), (torch.zeros(1, 1),), ["x"], "y", Path("out/model.onnx"))
    assert sorted(p.name for p in work.rglob("*")) == ["model.onnx", "out"]
    assert out.read_bytes() == b"model"
