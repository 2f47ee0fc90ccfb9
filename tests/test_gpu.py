"""GPU claims, proved on a CUDA machine (`pytest -m gpu`, run by benchmarks/gpu_check.sh); all skip without one.

Tiny models, seconds each: the providers the ONNX Runtime sessions really got, TensorRT's engine cache warmed
by export and reused by generate, reduced-precision parity, and fp16 training / distillation with a scaler.
"""

import importlib.util

import pytest
import torch

from fastsynth.models import load_model
from fastsynth.runtime import make_model_fn
from fastsynth.runtime.export import parity, parity_tolerance

pytestmark = pytest.mark.gpu

HAS_ORT_GPU = importlib.util.find_spec("onnxruntime") is not None


def _has_provider(name: str) -> bool:
    if not HAS_ORT_GPU:
        return False
    import onnxruntime as ort

    return name in ort.get_available_providers()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_eager_cuda_parity(tiny_model_dir, precision):
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    f = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cuda", precision=precision)
    rep = parity(ref, f, 16, batch_size=4, n_inputs=2, tol=max(parity_tolerance(precision), 1e-2))
    assert rep["ok"], rep


def test_onnx_cuda_session_runs_on_cuda(tiny_model_dir):
    if not _has_provider("CUDAExecutionProvider"):
        pytest.skip("onnxruntime-gpu not installed")
    f = make_model_fn(load_model(tiny_model_dir)[0], "onnx", "cuda", model_sha="c" * 64)
    assert f.providers[0] == "CUDAExecutionProvider"
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    assert parity(ref, f, 16, batch_size=4, n_inputs=2, tol=1e-2)["ok"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_tensorrt_session_runs_on_tensorrt(tiny_model_dir, precision):
    if not _has_provider("TensorrtExecutionProvider"):
        pytest.skip("onnxruntime-gpu with TensorRT not installed")
    from fastsynth.errors import FastsynthError

    try:
        f = make_model_fn(load_model(tiny_model_dir)[0], "tensorrt", "cuda", precision=precision, batch_size=4,
                          model_sha="t" * 64)
    except FastsynthError as exc:
        if precision == "bf16" and ">= 1.23" in str(exc):
            pytest.skip(str(exc))
        raise
    assert f.providers[0] == "TensorrtExecutionProvider"
    ref = make_model_fn(load_model(tiny_model_dir)[0], "eager", "cpu")
    rep = parity(ref, f, 16, batch_size=3, n_inputs=2, tol=max(parity_tolerance(precision), 1e-2))
    assert rep["ok"], rep
    assert any(p.suffix == ".engine" for p in f.trt_cache.rglob("*")), list(f.trt_cache.rglob("*"))


def test_export_tensorrt_engine_is_reused_by_generate(tiny_model_dir, tmp_path):
    if not _has_provider("TensorrtExecutionProvider"):
        pytest.skip("onnxruntime-gpu with TensorRT not installed")
    import time

    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.export import export_artifact
    from fastsynth.utils import file_sha256

    rep = export_artifact(str(tiny_model_dir), "tensorrt", tmp_path / "trt", device="cuda", precision="fp16",
                          batch_size=4)
    assert rep["parity"]["ok"], rep["parity"]
    engines = {p: p.stat().st_mtime_ns for p in tmp_path.joinpath("cache").rglob("*.engine")}
    assert engines and all(str(p).startswith(rep["artifact"]) for p in engines)
    time.sleep(0.01)
    # what generate builds for the same model, batch size and precision: loads the engine, builds none
    f = make_model_fn(load_model(tiny_model_dir)[0], "tensorrt", "cuda", precision="fp16", batch_size=4,
                      model_sha=file_sha256(tiny_model_dir / WEIGHTS_NAME))
    f(torch.randn(4, 4, 16, 16), torch.arange(4), torch.zeros(4, 8, 16, 16))
    after = {p: p.stat().st_mtime_ns for p in tmp_path.joinpath("cache").rglob("*.engine")}
    assert after == engines


def test_train_fp16_on_cuda_checkpoints_the_scaler(pair_folder, tmp_path):
    from accelerate.state import AcceleratorState

    from fastsynth.config import TrainConfig
    from fastsynth.training import train
    from fastsynth.training.checkpoint import load_blob

    AcceleratorState._reset_state(True)
    try:
        cfg = TrainConfig(data=str(pair_folder), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=2,
                          batch_size=2, checkpoint_every=1, log_every=1, test_fraction=0.0, warmup_steps=1,
                          mixed_precision="fp16")
        train(cfg, progress=False)
    finally:
        AcceleratorState._reset_state(True)
    assert load_blob(tmp_path / "run" / "checkpoint")["scaler"]["scale"] > 0


def test_distill_fp16_on_cuda_checkpoints_the_scaler(tiny_model_dir, tmp_path):
    from fastsynth.config import DistillConfig
    from fastsynth.training.checkpoint import load_blob
    from fastsynth.training.distill import distill

    cfg = DistillConfig(teacher=str(tiny_model_dir), out=str(tmp_path / "pd"), teacher_steps=2, student_steps=1,
                        steps_per_round=3, batch_size=2, checkpoint_every=1, mixed_precision="fp16")
    distill(cfg, time_limit_min=1e-9, progress=False, device="cuda")
    assert load_blob(tmp_path / "pd" / "checkpoint")["scaler"]["scale"] > 0
