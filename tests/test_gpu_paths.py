"""GPU code paths checked on the CPU: the providers an ONNX Runtime session really got (TensorRT / CUDA, no
silent fallback), TensorRT options per ONNX Runtime version, and export warming generate's engine cache.

ONNX Runtime's GPU build cannot be installed here, so its session is faked: these tests pin fastsynth's own
logic; `pytest -m gpu` (benchmarks/gpu_check.sh) runs the real thing on a GPU.
"""

import types

import pytest
import torch

from fastsynth.errors import FastsynthError
from fastsynth.runtime import onnx as ort_backend
from fastsynth.runtime.tensorrt import (TRT_BF16_MIN_ORT, check_session_providers, engine_cache_dir, ort_version,
                                        providers_for, trt_provider_options)

CUDA = torch.device("cuda", 0)


class FakeORT:
    """The parts of the onnxruntime module fastsynth uses; ``gives`` decides what a session really gets."""

    def __init__(self, version="1.23.0", available=("TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                     "CPUExecutionProvider"), gives=None, options=None):
        self.__version__ = version
        self._available = list(available)
        self.gives = gives or (lambda asked: [p[0] if isinstance(p, tuple) else p for p in asked]
                               + ["CPUExecutionProvider"])
        self.options = options or (lambda asked: {p[0]: {k: str(int(v)) if isinstance(v, bool) else str(v)
                                                          for k, v in p[1].items()}
                                                  for p in asked if isinstance(p, tuple)})
        self.sessions = []
        self.GraphOptimizationLevel = types.SimpleNamespace(ORT_ENABLE_ALL=99)
        ort = self

        class InferenceSession:
            def __init__(self, path, so=None, providers=None):
                self.path, self.asked = str(path), providers
                ort.sessions.append(self)

            def get_providers(self):
                return ort.gives(self.asked)

            def get_provider_options(self):
                return ort.options(self.asked)

            def get_inputs(self):
                return [types.SimpleNamespace(name=n) for n in ("x_t", "t", "cond")]

            def get_outputs(self):
                return [types.SimpleNamespace(name="model_output", shape=["batch", 4, 16, 16])]

        self.InferenceSession = InferenceSession

    def get_available_providers(self):
        return list(self._available)

    @staticmethod
    def SessionOptions():
        return types.SimpleNamespace()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))


def _use(monkeypatch, fake):
    real = ort_backend.require
    monkeypatch.setattr(ort_backend, "require", lambda m, *a: fake if m == "onnxruntime" else real(m, *a))
    return fake


def test_tensorrt_that_falls_back_to_cuda_or_cpu_is_refused(monkeypatch, tmp_path):
    for fallback in (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]):
        _use(monkeypatch, FakeORT(gives=lambda asked, fb=fallback: fb))
        with pytest.raises(FastsynthError, match="could not start its TensorRT provider") as e:
            ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp16", tensorrt=True, trt_cache=tmp_path / "e")
        assert str(fallback) in str(e.value) and "refusing" in str(e.value)


def test_onnx_cuda_that_falls_back_to_cpu_is_refused(monkeypatch, tmp_path):
    _use(monkeypatch, FakeORT(gives=lambda asked: ["CPUExecutionProvider"]))
    with pytest.raises(FastsynthError, match="could not start its CUDA provider"):
        ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp32")


def test_sessions_that_got_their_provider_run(monkeypatch, tmp_path):
    fake = _use(monkeypatch, FakeORT())
    fn = ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp16", tensorrt=True, trt_cache=tmp_path / "e")
    assert fn.providers[0] == "TensorrtExecutionProvider" and (tmp_path / "e").is_dir()
    name, opts = fake.sessions[-1].asked[0]
    assert name == "TensorrtExecutionProvider"
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "e")
    assert opts["trt_fp16_enable"] is True and opts["trt_bf16_enable"] is False
    fn = ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp32")
    assert fn.providers[0] == "CUDAExecutionProvider"
    assert fake.sessions[-1].asked == [("CUDAExecutionProvider", {"device_id": 0})]


def test_missing_providers_are_clear_errors(monkeypatch, tmp_path):
    _use(monkeypatch, FakeORT(available=["CPUExecutionProvider"]))
    with pytest.raises(FastsynthError, match="fastsynth\\[gpu\\]"):
        ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp16", tensorrt=True, trt_cache=tmp_path / "e")
    with pytest.raises(FastsynthError, match="no CUDA provider"):
        ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "fp32")
    with pytest.raises(FastsynthError, match="needs a CUDA GPU"):
        ort_backend.onnx_model_fn(tmp_path / "m.onnx", torch.device("cpu"), "fp16", tensorrt=True,
                                  trt_cache=tmp_path / "e")


def test_trt_bf16_enable_only_where_onnxruntime_knows_it(tmp_path):
    assert TRT_BF16_MIN_ORT == (1, 23)
    old, new = (1, 22), (1, 23)
    assert "trt_bf16_enable" not in trt_provider_options(0, tmp_path, "fp16", old)  # 1.22 rejects unknown keys
    assert "trt_bf16_enable" not in trt_provider_options(0, tmp_path, "fp32", old)
    with pytest.raises(FastsynthError, match=">= 1.23"):
        trt_provider_options(0, tmp_path, "bf16", old)
    o = trt_provider_options(1, tmp_path, "bf16", new)
    assert o["trt_bf16_enable"] is True and o["trt_fp16_enable"] is False and o["device_id"] == 1
    o = trt_provider_options(0, tmp_path, "auto", (1, 32))
    assert o["trt_fp16_enable"] is True and o["trt_bf16_enable"] is False
    assert ort_version(types.SimpleNamespace(__version__="1.23.0")) == (1, 23)
    assert ort_version(types.SimpleNamespace(__version__="1.24.0.dev20251101")) == (1, 24)
    assert ort_version(types.SimpleNamespace(__version__="1.9.1")) == (1, 9)


def test_bf16_silently_turned_off_by_tensorrt_is_refused(monkeypatch, tmp_path):
    # e.g. a GPU before compute capability 8.0: the provider starts, but reports trt_bf16_enable=0
    def options(asked):
        return {"TensorrtExecutionProvider": {"trt_bf16_enable": "0", "trt_fp16_enable": "0"}}

    _use(monkeypatch, FakeORT(options=options))
    with pytest.raises(FastsynthError, match="trt_bf16_enable: asked True, got 0"):
        ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "bf16", tensorrt=True, trt_cache=tmp_path / "e")
    # a provider that reports no options at all is accepted (nothing to compare)
    _use(monkeypatch, FakeORT(options=lambda asked: {}))
    fn = ort_backend.onnx_model_fn(tmp_path / "m.onnx", CUDA, "bf16", tensorrt=True, trt_cache=tmp_path / "e")
    assert fn.providers[0] == "TensorrtExecutionProvider"


def test_cpu_sessions_are_not_second_guessed():
    sess = types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    assert check_session_providers(sess, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_engine_cache_key():
    a = engine_cache_dir("a" * 64, 64, "fp16")
    assert a.parent.name == "tensorrt" and a.name.startswith("a" * 16 + "-b64-fp16-trt")
    assert engine_cache_dir("a" * 64, 64, "auto") == a  # auto builds fp16 engines: the same cache
    assert len({a, engine_cache_dir("a" * 64, 32, "fp16"), engine_cache_dir("a" * 64, 64, "bf16"),
                engine_cache_dir("b" * 64, 64, "fp16"), engine_cache_dir("a" * 64, 64, "fp16", "segmenter")}) == 5
    with pytest.raises(FastsynthError, match="--precision"):
        engine_cache_dir("a" * 64, 64, "int4")


class _Stop(Exception):
    pass


def test_export_tensorrt_warms_the_engine_cache_generate_reads(tiny_model_dir, tmp_path, monkeypatch):
    """`export --format tensorrt` and `generate --backend tensorrt` (same model, batch size, precision) open
    their TensorRT sessions on the same ONNX file (TensorRT names engines after it), the same engine folder and
    the same provider options."""
    import fastsynth.runtime as runtime
    import fastsynth.runtime.eager as eager
    from fastsynth.config import GenerateConfig
    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.pipeline import generate
    from fastsynth.export import export_artifact
    from fastsynth.utils import file_sha256

    from fastsynth.models import load_model

    sha = file_sha256(tiny_model_dir / WEIGHTS_NAME)
    ort_backend.cached_onnx(load_model(tiny_model_dir)[0], sha)  # the ONNX export itself, before faking CUDA
    fake = FakeORT()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    real_eager = eager.eager_model_fn
    monkeypatch.setattr(eager, "eager_model_fn", lambda net, dev, dtype: real_eager(net, torch.device("cpu"), dtype))
    calls = []

    def recording_onnx_model_fn(path, device, precision="fp32", tensorrt=False, trt_cache=None):
        calls.append({"onnx": str(path), "device": str(device), "precision": precision, "tensorrt": tensorrt,
                      "trt_cache": trt_cache, "providers": providers_for(device, tensorrt, precision, trt_cache, fake)})
        fn = real_eager(load_model(tiny_model_dir)[0], torch.device("cpu"), torch.float32)  # stands in for TRT
        fn.session, fn.providers = None, ["TensorrtExecutionProvider"]
        return fn

    monkeypatch.setattr(ort_backend, "onnx_model_fn", recording_onnx_model_fn)

    rep = export_artifact(str(tiny_model_dir), "tensorrt", tmp_path / "trt", device="cuda", precision="fp16",
                          batch_size=4)
    assert rep["parity"]["ok"] and (tmp_path / "trt" / "parity.json").exists()
    assert (tmp_path / "trt" / "denoiser.onnx").exists()

    real_make = runtime.make_model_fn

    def make_then_stop(*a, **kw):
        real_make(*a, **kw)
        raise _Stop

    monkeypatch.setattr(runtime, "make_model_fn", make_then_stop)
    with pytest.raises(_Stop):
        generate(GenerateConfig(n=4, batch_size=4, backend="tensorrt", precision="fp16"), tmp_path / "gen",
                 model=str(tiny_model_dir), device="cuda", progress=False)

    exp, gen = calls
    assert exp == gen
    # generate --batch-size 4 guides its redraw pass: the network (and the engine) sees batches of 8
    assert gen["trt_cache"] == engine_cache_dir(sha, 8, "fp16") and rep["artifact"] == str(gen["trt_cache"])
    assert gen["tensorrt"] and gen["providers"][0][1]["trt_engine_cache_path"] == str(gen["trt_cache"])


def test_export_cli_tensorrt_batch_defaults_to_generates(monkeypatch, tmp_path, capsys):
    import fastsynth.export as export
    from fastsynth.cli import main
    from fastsynth.config import GenerateConfig

    seen = {}

    def fake_export(model, fmt, out, device, precision, batch_size):
        seen[fmt] = batch_size
        return {"artifact": "x", "format": fmt, "kind": "denoiser", "device": "cuda:0",
                "parity": {"n_inputs": 1, "max_abs": 0.0, "max_rel": 0.0, "ok": True}}

    monkeypatch.setattr(export, "export_artifact", fake_export)
    assert main(["export", "--format", "tensorrt", "--out", str(tmp_path / "t")]) == 0
    assert "--batch-size 64" in capsys.readouterr().out
    assert main(["export", "--format", "onnx", "--out", str(tmp_path / "o")]) == 0
    assert seen == {"tensorrt": GenerateConfig().batch_size, "onnx": 8}


def test_extras_keep_torch_and_one_onnxruntime():
    """The gpu extra pulls nothing that replaces the installed torch; no extra meant for one environment
    mixes the CPU onnxruntime with onnxruntime-gpu; gpu-test is the gpu extra plus pytest."""
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(extra):
        return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in extras[extra]}

    torch_pinning = {"torch", "xformers", "torchvision", "torchaudio", "timm", "segmentation-models-pytorch"}
    assert not names("gpu") & torch_pinning and not names("gpu-test") & torch_pinning
    for extra in extras:
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names(extra), extra
    assert {"onnxruntime-gpu", "tensorrt", "onnx", "onnxscript"} <= names("gpu") <= names("gpu-test")
    assert "pytest" in names("gpu-test") and "onnxruntime" not in names("gpu-test")
    # xformers would only belong in an extra if fastsynth used it
    assert not any("xformers" in p.read_text() for p in (root / "fastsynth").rglob("*.py"))


def test_gpu_check_script_parses_and_its_helpers_run_on_the_cpu(tiny_model_dir, tmp_path):
    """benchmarks/gpu_check.sh is valid bash; the python it calls works here (parity, probe, generate, compare,
    summary), so the one call on a GPU machine fails only for GPU reasons."""
    import importlib.util
    import json
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", str(root / "benchmarks" / "gpu_check.sh")], check=True)

    def load(name):
        spec = importlib.util.spec_from_file_location(name, root / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    par, helpers = load("gpu_parity"), load("gpu_check_helpers")
    res = tmp_path / "results"
    assert par.main(["--model", str(tiny_model_dir), "--device", "cpu", "--backends", "eager",
                     "--precisions", "fp32,fp16", "--batch-size", "2", "--n-inputs", "1", "--repeats", "1",
                     "--out", str(res / "parity.json")]) == 0
    rows = json.loads((res / "parity.json").read_text())["rows"]
    assert [(r["backend"], r["precision"], r["status"]) for r in rows] == [("eager", "fp32", "ok"),
                                                                          ("eager", "fp16", "refused")]
    assert helpers.main(["probe", str(res / "probe_after.json")]) == 0
    probe = json.loads((res / "probe_after.json").read_text())
    assert probe["modules"]["torch"]["ok"] and "cpu" in probe and probe["gpu_ready"] is False
    common = ["--model", str(tiny_model_dir), "--steps", "1", "--batch-size", "2", "--shard-size", "2",
              "--backend", "eager", "--device", "cpu", "--no-progress"]
    assert helpers.main(["generate", str(res / "generate_10k.json"), "--", "--n", "4", "--out",
                         str(tmp_path / "a"), *common]) == 0
    gen = json.loads((res / "generate_10k.json").read_text())
    assert gen["rc"] == 0 and gen["manifest"]["n"] == 4 and gen["environment"]["cpu"]["model"]
    assert helpers.main(["generate", str(tmp_path / "g2.json"), "--", "--n", "2", "--out", str(tmp_path / "b"),
                         *common]) == 0
    assert helpers.main(["compare", str(res / "generate_2proc_compare.json"), str(tmp_path / "a"),
                         str(tmp_path / "b")]) == 0
    assert json.loads((res / "generate_2proc_compare.json").read_text())["rows_compared"] == 2
    (res / "step-parity.json").write_text(json.dumps({"name": "parity", "status": "ok", "rc": 0}))
    assert helpers.main(["summary", str(res)]) == 0
    summary = json.loads((res / "summary.json").read_text())
    assert summary["steps"]["parity"]["status"] == "ok" and summary["results"]["parity"]["eager/fp16"] == "refused"
