"""The learning-rate schedule of fastsynth train: linear warm-up, then constant or a cosine cool-down to 0."""

import pytest

from fastsynth.config import TrainConfig
from fastsynth.training.train import lr_factor


def test_constant_schedule_after_warmup():
    cfg = TrainConfig(steps=1000, warmup_steps=100)
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(99, cfg) == pytest.approx(1.0)
    assert lr_factor(500, cfg) == lr_factor(999, cfg) == 1.0


def test_cosine_schedule_cools_down_to_zero_at_the_last_step():
    cfg = TrainConfig(steps=1100, warmup_steps=100, lr_schedule="cosine")
    assert lr_factor(50, cfg) == pytest.approx(0.51)  # warm-up unchanged
    assert lr_factor(100, cfg) == pytest.approx(1.0)
    assert lr_factor(600, cfg) == pytest.approx(0.5)
    assert lr_factor(1100, cfg) == pytest.approx(0.0, abs=1e-12)
    factors = [lr_factor(k, cfg) for k in range(100, 1101, 50)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_unknown_schedule_is_refused_before_training(tmp_path):
    from fastsynth.errors import FastsynthError
    from fastsynth.training import train

    with pytest.raises(FastsynthError, match="--lr-schedule 'linear'"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), lr_schedule="linear"), progress=False)
