"""int8 on CPU behind the accuracy gate: quantisation of a tiny model, the gate's verdicts, refusal, cache keys,
OpenVINO, and what auto picks. Skips without onnxruntime (OpenVINO tests without openvino)."""

import importlib.util
import json

import pytest
import torch

from fastsynth.errors import FastsynthError, MissingExtraError
from fastsynth.models import load_model
from fastsynth.runtime import make_model_fn, make_segmenter_fn, resolve_runtime

HAS_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))
HAS_OV = HAS_ORT and importlib.util.find_spec("openvino") is not None
pytestmark = [pytest.mark.onnx, pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnx/onnxscript not installed")]
SHA = "ab" * 32


@pytest.fixture(scope="module")
def int8_fn(tiny_model_dir):
    """The tiny model quantised once (calibration, two quantisation passes, the gate): a few seconds."""
    net, meta = load_model(tiny_model_dir)
    return make_model_fn(net, "onnx", "cpu", "int8", model_sha=SHA, meta=meta)


def _inputs(n=5, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, res, res, generator=g), torch.randint(0, 1000, (n,), generator=g),
            torch.zeros(n, 8, res, res))


def test_quantise_tiny_model_and_gate_record(int8_fn, tiny_model_dir):
    from fastsynth.runtime.gates import int8_paths

    gate = int8_fn.gate
    assert int8_fn.backend == "onnx" and int8_fn.precision == "int8"
    assert gate["accepted_output_level"] and not gate["accepted"]  # no data-level verdict yet
    f = gate["figures"]
    assert 0 < f["output"]["rel_rms"] < 0.1 and len(f["output"]["rel_rms_by_timestep"]) == 10
    assert 0 <= f["sampler"]["mean_abs_pixel"] and 0 <= f["sampler"]["mean_mask_iou"] <= 1
    paths = int8_paths(SHA, 16, "onnx")
    assert paths["model"].exists() and paths["gate"].exists()
    info = json.loads(paths["info"].read_text())
    assert info["quantised"] >= 1 and len(info["fp32_first_last"]) == 2  # something is int8, the ends are not
    # the int8 graph is the same function, roughly
    net, _ = load_model(tiny_model_dir)
    ref = make_model_fn(net, "onnx", "cpu", model_sha=SHA)
    x = _inputs()
    a, b = ref(*x), int8_fn(*x)
    assert b.shape == a.shape and ((a - b).norm() / a.norm()).item() < 0.2


def test_gate_verdict_thresholds(int8_fn):
    from fastsynth.runtime.gates import GATE, verdict

    figures = int8_fn.gate["figures"]
    assert verdict(figures, GATE)["ok"]
    absurd = {"max_output_rel_rms": 1e-9, "max_mean_abs_pixel": 1e-9, "min_mean_mask_iou": 1.0 + 1e-9}
    v = verdict(figures, absurd)
    assert not v["ok"] and not any(v["checks"].values())


def test_failed_gate_refuses_with_a_clear_message(int8_fn, tiny_model_dir, monkeypatch):
    import fastsynth.runtime.gates as q

    monkeypatch.setattr(q, "GATE", {"max_output_rel_rms": 1e-9, "max_mean_abs_pixel": 1e-9,
                                    "min_mean_mask_iou": 1.0})
    net, meta = load_model(tiny_model_dir)
    with pytest.raises(FastsynthError, match=r"int8 refused .* accuracy gate failed.*relative RMS error"):
        make_model_fn(net, "onnx", "cpu", "int8", model_sha=SHA, meta=meta)


def test_int8_is_a_cpu_denoiser_path(tiny_model_dir):
    net, _ = load_model(tiny_model_dir)
    with pytest.raises(FastsynthError, match="--backend onnx or openvino"):
        make_model_fn(net, "eager", "cpu", "int8", model_sha=SHA)
    with pytest.raises(FastsynthError, match="CPU path"):
        make_model_fn(net, "onnx", "cuda", "int8", model_sha=SHA)
    with pytest.raises(FastsynthError, match="for the denoiser"):
        make_segmenter_fn(net, 16, "onnx", "cpu", "int8")


def test_cache_key_changes_with_model_and_recipe():
    from fastsynth.runtime.gates import CALIBRATION
    from fastsynth.runtime.int8 import RECIPE, int8_dir

    a = int8_dir("a" * 64, 64, CALIBRATION)
    assert a == int8_dir("a" * 64, 64, CALIBRATION)
    assert a != int8_dir("b" * 64, 64, CALIBRATION)
    assert a != int8_dir("a" * 64, 32, CALIBRATION)
    assert a != int8_dir("a" * 64, 64, {**CALIBRATION, "seed": 1})
    assert a != int8_dir("a" * 64, 64, CALIBRATION, {**RECIPE, "calibration": {"method": "percentile",
                                                                                "percentile": 99.9}})


def test_other_weights_are_quantised_apart(int8_fn, tiny_model_dir):
    """Another model (other weights, other sha) gets its own quantised file and gate."""
    from fastsynth.runtime.gates import gate_status

    assert gate_status(SHA, 16, "onnx") is not None
    assert gate_status("cd" * 32, 16, "onnx") is None


def _write_choice(ms):
    from fastsynth.runtime.choice import write_choice

    return write_choice(ms, 64, SHA)


def test_auto_uses_the_machine_choice(int8_fn, no_choice_after):
    assert resolve_runtime("auto", "cpu", "fp32") == ("onnx", "fp32")  # no choice measured: today's default
    _write_choice({("onnx", "fp32"): 10.0, ("eager", "fp32"): 12.0, ("onnx", "int8"): 7.0})
    assert resolve_runtime("auto", "cpu", "fp32") == ("onnx", "fp32")
    # faster, but accepted at the output level only: auto keeps fp32
    assert resolve_runtime("auto", "cpu", "auto", SHA, 16) == ("onnx", "fp32")
    assert resolve_runtime("auto", "cpu", "int8") == ("onnx", "int8")  # asked for explicitly


def test_auto_picks_int8_only_when_accepted_and_faster(int8_fn, no_choice_after):
    from fastsynth.runtime.gates import record_data_level

    record_data_level(SHA, 16, "onnx", {"ok": True, "note": "test"})
    try:
        _write_choice({("onnx", "fp32"): 10.0, ("onnx", "int8"): 7.0})
        assert resolve_runtime("auto", "cpu", "auto", SHA, 16) == ("onnx", "int8")
        assert resolve_runtime("auto", "cpu", "auto", "cd" * 32, 16) == ("onnx", "fp32")  # another model
        _write_choice({("onnx", "fp32"): 10.0, ("onnx", "int8"): 11.0})  # accepted but slower here
        assert resolve_runtime("auto", "cpu", "auto", SHA, 16) == ("onnx", "fp32")
        record_data_level(SHA, 16, "onnx", {"ok": False})
        _write_choice({("onnx", "fp32"): 10.0, ("onnx", "int8"): 7.0})
        assert resolve_runtime("auto", "cpu", "auto", SHA, 16) == ("onnx", "fp32")
    finally:
        from fastsynth.runtime.gates import int8_paths

        int8_paths(SHA, 16, "onnx")["data"].unlink(missing_ok=True)


def test_missing_openvino_is_a_clear_error(tiny_model_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    net, _ = load_model(tiny_model_dir)
    with pytest.raises(MissingExtraError, match=r"fastsynth\[openvino\]"):
        make_model_fn(net, "openvino", "cpu", model_sha=SHA)


@pytest.mark.skipif(not HAS_OV, reason="openvino not installed")
def test_openvino_fp32_parity_and_int8(int8_fn, tiny_model_dir):
    from fastsynth.runtime.export import parity

    net, meta = load_model(tiny_model_dir)
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    ov = make_model_fn(net, "openvino", "cpu", model_sha=SHA)
    rep = parity(ref, ov, 16, batch_size=3, n_inputs=2)
    assert rep["ok"], rep
    assert ov(*_inputs(7)).shape == (7, 4, 16, 16)  # another batch size: split into static chunks, padded
    q = make_model_fn(net, "openvino", "cpu", "int8", model_sha=SHA, meta=meta)
    assert q.gate["runtime"].startswith("openvino-") and q.gate["accepted_output_level"]
    assert q(*_inputs(5)).shape == (5, 4, 16, 16)


def test_choice_needs_a_margin_to_leave_the_default(no_choice_after):
    import json

    from fastsynth.runtime.choice import MARGIN

    p = _write_choice({("onnx", "fp32"): 100.0, ("openvino", "fp32"): 100.0 * MARGIN + 1,
                       ("onnx", "int8"): 80.0, ("openvino", "int8"): 60.0})
    fastest = json.loads(p.read_text())["fastest"]
    assert fastest["fp32"]["backend"] == "onnx"  # within the noise margin: the default stays
    assert fastest["int8"]["backend"] == "openvino"
    assert resolve_runtime("auto", "cpu", "fp32")[0] == "onnx"


def test_segmenters_never_get_openvino_from_auto(no_choice_after):
    from fastsynth.runtime import resolve_backend

    _write_choice({("onnx", "fp32"): 100.0, ("openvino", "fp32"): 50.0})
    assert resolve_backend("auto", "cpu") == ("openvino" if HAS_OV else "onnx")  # the choice needs the package
    assert resolve_backend("auto", "cpu", kind="segmenter") == "onnx"
    assert resolve_backend("auto", "cpu", "auto", kind="segmenter") == "onnx"


def test_generate_in_int8_records_it(tiny_model_dir, tmp_path):
    from fastsynth.config import GenerateConfig
    from fastsynth.pipeline import generate

    s = generate(GenerateConfig(n=3, steps=2, batch_size=3, shard_size=3, precision="int8", backend="onnx"),
                 tmp_path / "o", model=str(tiny_model_dir), progress=False)
    assert s["complete"] and s["backend"] == "onnx"
    manifest = json.loads((tmp_path / "o" / "fastsynth.json").read_text())
    assert manifest["runtime_precision"] == "int8" and manifest["precision"] == "int8"
    assert "network in int8" in (tmp_path / "o" / "README.md").read_text()
