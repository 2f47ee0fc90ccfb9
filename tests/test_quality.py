"""Quality checks of the bundled model against the real data it was trained on (skipped without the data).

These state the targets of the project's quality work; a check the shipped model does not meet yet is marked
``xfail(strict=True)`` with the measured value, so it turns into a failure (to be un-marked) the day it passes.
"""

import json

import numpy as np
import pytest

from conftest import REAL_DATA

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not (REAL_DATA / "images").is_dir(), reason="needs ../shared/data/kvasir-seg")]


def _bundled_samples(n: int = 32):
    import torch

    from fastsynth.config import GenerateConfig
    from fastsynth.models import load_model
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.runtime import make_model_fn
    from fastsynth.sampling import make_scheduler, opening_size, resolve_sampler

    from dataclasses import replace

    from fastsynth.config import apply_model_defaults

    net, meta = load_model(None)
    res = net.config.resolution
    cfg = apply_model_defaults(GenerateConfig(), meta)  # the model's own default for pairs, as generate uses it
    sampler, steps, grid = resolve_sampler(cfg.sampler, cfg.steps, meta)
    sch = make_scheduler(sampler, net.config.num_train_timesteps, net.config.beta_schedule,
                         net.config.prediction_type, grid=grid)
    idx = np.arange(n)
    im, mk, _ = sample_pairs(make_model_fn(net, "eager", "cpu"), sch, replace(cfg, sampler=sampler, steps=steps),
                             Conditioning("pairs", [], None, ""), idx, np.array([row_seed(0, i) for i in idx]), res,
                             0, opening_size(res), torch.device("cpu"))
    return net, im, mk


def _real_train(res: int, n: int = 128):
    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.models import resolve_model_dir

    split = json.loads((resolve_model_dir(None) / "split.json").read_text())
    _, arr = load_pairs(scan_pairs(REAL_DATA), res, split["train"][:n])
    return arr


# measured on these 32 seeds and 128 training images with the default settings: the first bundled model (3825 steps,
# one pass) 2.0x (15.2 vs 7.6); the second (+1804 Min-SNR steps) 1.34x in one pass (10.5 vs 7.8) and 1.31x with the
# default redraw (10.3 vs 7.8), when this test was an expected failure; the current one (+9848 steps, 15,477 in all)
# 0.97x (7.59 vs 7.83). Its spectral power above 0.25 cycles/pixel is now below the real images' (0.017 vs 0.030).
def test_bundled_samples_have_the_grain_of_real_images():
    from fastsynth.metrics.texture import hf_energy_report

    net, im, _ = _bundled_samples()
    real = _real_train(net.config.resolution)
    rep = hf_energy_report(im, real[:, :3].transpose(0, 2, 3, 1))
    assert rep["within_margin"], rep
