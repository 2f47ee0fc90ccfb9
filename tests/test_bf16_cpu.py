"""bf16 on the CPU through OpenVINO behind the same accuracy gate as int8: refused where the CPU has no native bf16,
measured against fp32 where it has, and picked by ``--precision auto`` only when accepted at both levels and
measured faster here. Skips without onnxruntime / openvino."""

import importlib.util
import json

import pytest
import torch

from fastsynth.errors import FastsynthError
from fastsynth.models import load_model
from fastsynth.runtime import make_model_fn, resolve_runtime
from fastsynth.utils import cpu_has_bf16

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))
HAS_OV = HAS_ORT and importlib.util.find_spec("openvino") is not None
SHA = "bf" * 32


def test_cpu_has_bf16_reads_the_flags():
    flags = {"avx2": True, "avx512f": True, "avx512_bf16": False, "amx_bf16": False}
    assert not cpu_has_bf16({"model": "x", "flags": flags})
    assert cpu_has_bf16({"model": "x", "flags": {**flags, "avx512_bf16": True}})
    assert cpu_has_bf16({"model": "x", "flags": {**flags, "amx_bf16": True}})
    assert not cpu_has_bf16({"model": "x", "flags": None})  # unknown: never assumed


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
def test_openvino_bf16_is_refused_without_native_bf16(tiny_model_dir, monkeypatch):
    import fastsynth.runtime.openvino as ov

    monkeypatch.setattr(ov, "cpu_has_bf16", lambda: False)
    net, meta = load_model(tiny_model_dir)
    with pytest.raises(FastsynthError, match="AVX512_BF16 or AMX"):
        make_model_fn(net, "openvino", "cpu", "bf16", model_sha=SHA, meta=meta)


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX512_BF16 / AMX")
def test_openvino_bf16_runs_and_measures_its_gate(tiny_model_dir):
    from fastsynth.runtime.gates import bf16_paths

    net, meta = load_model(tiny_model_dir)
    fn = make_model_fn(net, "openvino", "cpu", "bf16", model_sha=SHA, meta=meta)
    assert fn.backend == "openvino" and fn.precision == "bf16" and "bf16" in fn.providers[0]
    g = fn.gate
    assert g["precision"] == "bf16" and g["reference"] == "onnx fp32"
    assert 0 < g["figures"]["output"]["rel_rms"] < 0.1  # bf16 differs from fp32, a little
    assert g["accepted_output_level"] and not g["accepted"]  # no data-level verdict yet
    assert bf16_paths(SHA, 16)["gate"].exists()
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    g_ = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 4, 16, 16, generator=g_), torch.randint(0, 1000, (5,), generator=g_), torch.zeros(5, 8, 16, 16))
    a, b = ref(*x), fn(*x)
    assert b.dtype == torch.float32 and ((a - b).norm() / a.norm()).item() < 0.05


def _fake_gate(sha, ok_output=True):
    """A bf16 gate record as ``ensure_bf16`` writes it, without running OpenVINO."""
    from fastsynth.runtime.gates import GATE_INPUTS, bf16_paths

    p = bf16_paths(sha, 16)
    p["dir"].mkdir(parents=True, exist_ok=True)
    figures = {"output": {"rel_rms": 0.02 if ok_output else 0.5},
               "sampler": {"mean_abs_pixel": 1.0, "mean_mask_iou": 0.99}}
    p["gate"].write_text(json.dumps({"model_sha256": sha, "precision": "bf16", "gate_inputs": GATE_INPUTS,
                                     "figures": figures}))
    return p


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
def test_auto_picks_bf16_only_when_accepted_faster_and_native(no_choice_after, monkeypatch):
    import fastsynth.utils as utils
    from fastsynth.runtime.gates import gate_status, record_data_level
    from fastsynth.runtime.choice import write_choice

    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    sha = "b1" * 32
    p = _fake_gate(sha)
    try:
        write_choice({("onnx", "fp32"): 10.0, ("openvino", "bf16"): 5.0}, 64, sha)
        assert gate_status(sha, 16, "openvino", "bf16")["accepted_output_level"]
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")  # no data-level verdict
        record_data_level(sha, 16, "openvino", {"ok": True, "note": "test"}, "bf16")
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("openvino", "bf16")
        assert resolve_runtime("auto", "cpu", "auto", "cd" * 32, 16) == ("onnx", "fp32")  # another model
        assert resolve_runtime("auto", "cpu", "fp32") == ("onnx", "fp32")  # an explicit precision stays
        write_choice({("onnx", "fp32"): 10.0, ("openvino", "bf16"): 9.9}, 64, sha)  # within the margin
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")
        write_choice({("onnx", "fp32"): 10.0, ("openvino", "bf16"): 5.0}, 64, sha)
        monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: False)  # a choice file from another CPU
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")
        monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
        _fake_gate(sha, ok_output=False)
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")
    finally:
        for f in (p["gate"], p["data"]):
            f.unlink(missing_ok=True)


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
def test_bf16_data_verdict_needs_its_gate_first():
    from fastsynth.runtime.gates import record_data_level

    with pytest.raises(FastsynthError, match="no bf16 gate"):
        record_data_level("0e" * 32, 16, "openvino", {"ok": True}, "bf16")


def test_training_autocast_on_the_cpu_follows_the_flags(monkeypatch):
    import fastsynth.utils as utils

    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    assert utils.resolve_mixed_precision("auto", "cpu") == "bf16"
    assert utils.resolve_mixed_precision("no", "cpu") == "no"  # an explicit choice stays
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: False)
    assert utils.resolve_mixed_precision("auto", "cpu") == "no"
    assert utils.resolve_mixed_precision("bf16", "cpu") == "bf16"


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
def test_a_fresh_machine_uses_the_gate_shipped_with_the_model(tmp_path, monkeypatch):
    """No choice file and no cached gate: auto takes bf16 only from a complete, matching record in the model's
    folder, and only on a CPU with native bf16."""
    import fastsynth.utils as utils
    from fastsynth.runtime.gates import GATE_INPUTS, ship_gate, shipped_gate_path
    from fastsynth.runtime.choice import read_choice

    assert read_choice() is None
    sha = "5e" * 32
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"resolution": 16}))
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    assert resolve_runtime("auto", "cpu", "auto", sha, 16, model_dir=model_dir) == ("onnx", "fp32")  # nothing shipped
    with pytest.raises(FastsynthError, match="no complete bf16 gate"):
        ship_gate(model_dir, sha)
    p = _fake_gate(sha)
    from fastsynth.runtime.gates import record_data_level

    record_data_level(sha, 16, "openvino", {"ok": True, "command": "python judge.py --out /tmp/abc/judge-out"}, "bf16")
    out = ship_gate(model_dir, sha)
    assert out == shipped_gate_path(model_dir, "openvino") and json.loads(out.read_text())["data"]["ok"]
    assert "/tmp/abc" not in out.read_text()  # a shipped file carries no local paths
    for f in (p["gate"], p["data"]):  # a fresh machine: nothing cached
        f.unlink()
    assert resolve_runtime("auto", "cpu", "auto", sha, 16, model_dir=model_dir) == ("openvino", "bf16")
    assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")  # no model folder given
    assert resolve_runtime("auto", "cpu", "auto", "77" * 32, 16, model_dir=model_dir) == ("onnx", "fp32")  # other weights
    assert resolve_runtime("onnx", "cpu", "auto", sha, 16, model_dir=model_dir) == ("onnx", "fp32")  # backend asked
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: False)
    assert resolve_runtime("auto", "cpu", "auto", sha, 16, model_dir=model_dir) == ("onnx", "fp32")
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    blob = json.loads(out.read_text())
    out.write_text(json.dumps({**blob, "data": {"ok": False}}))  # shipped, but rejected at the data level
    assert resolve_runtime("auto", "cpu", "auto", sha, 16, model_dir=model_dir) == ("onnx", "fp32")


def _metrics(agreement: float, kid: float) -> dict:
    return {"agreement": {"dice": agreement}, "fid_kid": {"kid": kid, "fid": 100.0}}


def test_data_level_verdict_accepts_inside_the_fp32_seeds_prediction_interval_and_rejects_outside():
    from fastsynth.runtime.gates import data_level_verdict

    fp32 = [_metrics(0.710, 0.1218), _metrics(0.722, 0.1211), _metrics(0.715, 0.1225), _metrics(0.705, 0.1203)]
    # the old rule (|x - seed 0| <= |seed 1 - seed 0| = 0.0007) rejected this KID; it lies inside the seeds' spread
    ok = data_level_verdict(fp32, _metrics(0.713, 0.1205), "bf16")
    assert ok["ok"] and ok["checks"] == {"agreement": True, "kid": True}
    assert ok["kid"]["fp32_sd"] > 0 and ok["kid"]["tolerance"] > abs(ok["kid"]["difference"])
    far = data_level_verdict(fp32, _metrics(0.713, 0.1350), "bf16")  # KID far outside the fp32 spread
    assert not far["ok"] and far["checks"] == {"agreement": True, "kid": False}
    low = data_level_verdict(fp32, _metrics(0.600, 0.1215), "bf16")  # masks no longer match the images
    assert not low["ok"] and not low["checks"]["agreement"]
    # a figure that was not measured is not a pass
    assert not data_level_verdict(fp32, {"agreement": {"dice": 0.713}}, "bf16")["ok"]
    with pytest.raises(FastsynthError, match="at least 3 fp32 seeds"):
        data_level_verdict(fp32[:2], _metrics(0.713, 0.1205), "bf16")


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_OV, reason="openvino/onnxruntime not installed")
@pytest.mark.parametrize("name", ["bundled", "bundled-256"])
def test_a_bundled_model_ships_a_complete_bf16_gate_that_auto_takes(name, monkeypatch):
    """The shipped records match the shipped weights, were accepted at both levels, are package data (a pip install
    carries them), and make --precision auto run bf16 on a bf16 CPU of a fresh machine."""
    import fnmatch
    import tomllib
    from pathlib import Path

    import fastsynth
    import fastsynth.utils as utils
    from fastsynth.models import resolve_model_dir
    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.runtime.gates import shipped_gate_path
    from fastsynth.utils import file_sha256

    mdir = resolve_model_dir(name)
    path = shipped_gate_path(mdir, "openvino")
    if not path.is_file():
        pytest.skip(f"{name}: no gate shipped for this OpenVINO version ({path.name})")
    rec, sha = json.loads(path.read_text()), file_sha256(mdir / WEIGHTS_NAME)
    assert rec["gate"]["model_sha256"] == sha and rec["gate"]["precision"] == "bf16"
    assert rec["data"]["ok"] and rec["data"]["checks"] == {"agreement": True, "kid": True}
    pkg_root = Path(fastsynth.__file__).parent
    pyproject = pkg_root.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout: the records are declared package data
        patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["fastsynth"]
        rel = path.relative_to(pkg_root).parts  # setuptools' globs: '*' stays inside one folder
        assert any(len(p.split("/")) == len(rel) and all(map(fnmatch.fnmatch, rel, p.split("/"))) for p in patterns)
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    res = json.loads((mdir / "config.json").read_text())["resolution"]
    assert resolve_runtime("auto", "cpu", "auto", sha, res, model_dir=mdir) == ("openvino", "bf16")
