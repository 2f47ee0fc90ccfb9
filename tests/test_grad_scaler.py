"""fp16 training and distillation scale the loss: backward, gradient clipping and the optimizer step go through
a gradient scaler, whose state is checkpointed and restored on resume.

On a GPU, ``mixed_precision="fp16"`` makes accelerate own a ``GradScaler`` (train) and distill builds its own.
Here (CPU) distill's fp16 path runs for real (CPU autocast + ``torch.amp.GradScaler("cpu")``); accelerate makes
no scaler on the CPU, so train gets an Accelerator that carries one, as it does on a GPU.
"""

import pytest
import torch

from fastsynth.config import DistillConfig, TrainConfig
from fastsynth.training import train
from fastsynth.training.checkpoint import load_blob
from fastsynth.training.distill import distill

CALLS: list[str] = []


class SpyScaler(torch.amp.GradScaler):
    """A real GradScaler that records which of its methods the training loop calls."""

    def scale(self, outputs):
        CALLS.append("scale")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        CALLS.append("unscale_")
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        CALLS.append("step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        CALLS.append("update")
        return super().update(new_scale)

    def load_state_dict(self, state_dict):
        CALLS.append("load_state_dict")
        return super().load_state_dict(state_dict)


@pytest.fixture(autouse=True)
def _spy(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(torch.amp, "GradScaler", SpyScaler)


def _distill_cfg(tiny_model_dir, out, **kw):
    base = dict(teacher=str(tiny_model_dir), out=str(out), teacher_steps=2, student_steps=1, steps_per_round=3,
                batch_size=2, lr=1e-3, warmup_steps=1, checkpoint_every=1, log_every=1, mixed_precision="fp16")
    return DistillConfig(**{**base, **kw})


def test_distill_fp16_steps_through_a_checkpointed_scaler(tiny_model_dir, tmp_path):
    cfg = _distill_cfg(tiny_model_dir, tmp_path / "pd")
    distill(cfg, time_limit_min=1e-9, progress=False, device="cpu")  # stops after step 1, mid-round
    assert CALLS == ["scale", "unscale_", "step", "update"]  # backward, clip and step all through the scaler
    blob = load_blob(tmp_path / "pd" / "checkpoint")
    assert blob["scaler"]["scale"] > 0 and "_growth_tracker" in blob["scaler"]
    CALLS.clear()
    distill(cfg, resume=True, progress=False, device="cpu")
    assert CALLS[0] == "load_state_dict"  # the resumed round continues with the saved scale
    assert CALLS.count("step") == 2 and CALLS.count("scale") == 2


def test_distill_fp32_saves_no_scaler(tiny_model_dir, tmp_path):
    distill(_distill_cfg(tiny_model_dir, tmp_path / "pd", mixed_precision="no"), time_limit_min=1e-9,
            progress=False, device="cpu")
    assert "scaler" not in load_blob(tmp_path / "pd" / "checkpoint")


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision included): start and leave it clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_train_fp16_steps_through_the_accelerators_scaler(pair_folder, tmp_path, monkeypatch,
                                                          fresh_accelerate_state):
    import accelerate

    made = []

    class GPUlikeAccelerator(accelerate.Accelerator):
        """fp16 as on a CUDA device: accelerate's native AMP with a GradScaler (on the CPU it makes none)."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            assert self.mixed_precision == "fp16"  # train asked for fp16
            self.native_amp = True
            self.scaler = SpyScaler(self.device.type, init_scale=2.0 ** (10 - 5 * len(made)))  # resumed: another
            made.append(self)

    monkeypatch.setattr(accelerate, "Accelerator", GPUlikeAccelerator)
    cfg = TrainConfig(data=str(pair_folder), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=2,
                      batch_size=2, checkpoint_every=1, log_every=1, test_fraction=0.0, warmup_steps=1,
                      mixed_precision="fp16", grad_clip=1.0)
    train(cfg, progress=False)
    assert CALLS == ["scale", "unscale_", "step", "update"] * 2
    blob = load_blob(tmp_path / "run" / "checkpoint")
    assert blob["scaler"] == made[0].scaler.state_dict()
    CALLS.clear()
    train(TrainConfig(**{**cfg.__dict__, "steps": 3}), resume=True, progress=False)
    assert CALLS[0] == "load_state_dict" and CALLS[1:] == ["scale", "unscale_", "step", "update"]
    assert made[0].scaler.get_scale() == 2.0 ** 10  # no overflow in these steps
    assert made[1].scaler.get_scale() == 2.0 ** 10  # the saved scale, not the new run's 2**5
