"""Backend parity: every backend available here against eager; GPU backends skip without a GPU."""

import importlib.util

import numpy as np
import pytest
import torch

from fastsynth.config import GenerateConfig
from fastsynth.errors import FastsynthError
from fastsynth.models import load_model
from fastsynth.pipeline import generate
from fastsynth.runtime import make_model_fn
from fastsynth.runtime.export import parity

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnxscript not installed")
def test_onnx_parity_and_export_report(tiny_model_dir, tmp_path):
    from fastsynth.export import export_artifact

    rep = export_artifact(str(tiny_model_dir), "onnx", tmp_path / "exp", device="cpu", batch_size=3)
    assert rep["parity"]["ok"] and rep["parity"]["max_abs"] < 1e-4
    assert (tmp_path / "exp" / "denoiser.onnx").exists() and (tmp_path / "exp" / "parity.json").exists()
    # dynamic batch: another batch size runs too
    net, _ = load_model(tiny_model_dir)
    f = make_model_fn(net, "onnx", "cpu", model_sha="x" * 64)
    assert f(torch.randn(5, 4, 16, 16), torch.arange(5), torch.zeros(5, 8, 16, 16)).shape == (5, 4, 16, 16)


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnxscript not installed")
def test_generate_with_onnx_matches_eager(tiny_model_dir, tmp_path):
    import datasets

    cfg = dict(n=6, steps=3, batch_size=3, shard_size=6, seed=1)
    generate(GenerateConfig(**cfg, backend="eager"), tmp_path / "e", model=str(tiny_model_dir), progress=False)
    s = generate(GenerateConfig(**cfg), tmp_path / "o", model=str(tiny_model_dir), progress=False)
    assert s["backend"] == "onnx"  # auto picks ONNX Runtime on CPU when it is installed
    a = datasets.load_dataset(str(tmp_path / "e"), split="train", cache_dir=str(tmp_path / "c1"))
    b = datasets.load_dataset(str(tmp_path / "o"), split="train", cache_dir=str(tmp_path / "c2"))
    ia = np.stack([np.array(x) for x in a["image"]]).astype(int)
    ib = np.stack([np.array(x) for x in b["image"]]).astype(int)
    assert np.abs(ia - ib).max() <= 1


@pytest.mark.slow
def test_compile_parity(tiny_model_dir):
    net, _ = load_model(tiny_model_dir)
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    comp = make_model_fn(net, "compile", "cpu", batch_size=4)
    rep = parity(ref, comp, 16, batch_size=3, n_inputs=2)  # 3 < 4 exercises the padding path
    assert rep["ok"], rep


def test_unknown_backend_and_precision(tiny_model_dir):
    net, _ = load_model(tiny_model_dir)
    with pytest.raises(FastsynthError, match="--backend 'fast'"):
        make_model_fn(net, "fast", "cpu")
    with pytest.raises(FastsynthError, match="fp16 is not supported on CPU"):
        make_model_fn(net, "eager", "cpu", precision="fp16")


def test_tensorrt_without_gpu_is_a_clear_error(tiny_model_dir, tmp_path):
    from fastsynth.export import export_artifact

    if HAS_CUDA:
        pytest.skip("has a GPU")
    with pytest.raises(FastsynthError, match="needs a CUDA GPU"):
        export_artifact(str(tiny_model_dir), "tensorrt", tmp_path / "t", device="cpu")


def test_bf16_eager_close_to_fp32(tiny_model_dir):
    net, _ = load_model(tiny_model_dir)
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    bf = make_model_fn(net, "eager", "cpu", precision="bf16")
    rep = parity(ref, bf, 16, batch_size=2, n_inputs=1, tol=5e-2)
    assert rep["ok"], rep


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["eager", "compile", "onnx", "tensorrt"])
def test_gpu_backends_parity(tiny_model_dir, backend):
    if backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt not installed")
    net, _ = load_model(tiny_model_dir)
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    f = make_model_fn(net, backend, "cuda", precision="fp32", batch_size=4, model_sha="g" * 64)
    assert parity(ref, f, 16, batch_size=4, n_inputs=2, tol=1e-2)["ok"]
