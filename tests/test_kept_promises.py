"""Settings that would silently do nothing are refused, and what is recorded is what ran (issue 24)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsynth.config import GenerateConfig
from fastsynth.errors import FastsynthError
from fastsynth.pipeline import generate

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**kw):
    base = dict(n=4, steps=4, batch_size=4, shard_size=4, seed=3, backend="eager", sampler="unipc", redraw=False)
    base.update(kw)
    return GenerateConfig(**base)


def test_condition_at_below_every_visited_level_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(FastsynthError, match=r"no step of unipc x4 reaches .*levels it visits: .*choose a level"):
        generate(_cfg(redraw=None, condition_at=0.01), tmp_path / "g", model=str(tiny_model_dir), progress=False)
    with pytest.raises(FastsynthError, match="first step of unipc x4 is already at or below it"):
        generate(_cfg(redraw=None, condition_at=1e6), tmp_path / "g", model=str(tiny_model_dir), progress=False)
    assert not (tmp_path / "g").exists()


def test_condition_at_records_the_step_of_the_switch(tiny_model_dir, tmp_path):
    from fastsynth.models import load_model
    from fastsynth.sampling import make_scheduler
    from fastsynth.sampling.pairs import visited_levels

    generate(_cfg(redraw=None, condition_at=1.5), tmp_path / "g", model=str(tiny_model_dir), progress=False)
    m = json.loads((tmp_path / "g" / "fastsynth.json").read_text())
    net, _ = load_model(tiny_model_dir)
    c = net.config
    levels = visited_levels(make_scheduler("unipc", c.num_train_timesteps, c.beta_schedule, c.prediction_type), 4)
    k = m["condition_at_step"]
    assert levels[k] <= 1.5 < levels[k - 1]


def test_the_conditioned_phase_runs(tiny_model_dir):
    """After the switch every network call sees the fixed mask as known values, and it is the mask written out."""
    from fastsynth.data.codec import labels_to_channels
    from fastsynth.data.modality import Modality
    from fastsynth.models import load_model
    from fastsynth.sampling.pairs import Conditioning, condition_switch_step, generation_settings, row_seed, \
        sample_pairs

    net, meta = load_model(tiny_model_dir)
    cfg, sch = generation_settings(_cfg(redraw=None, condition_at=1.5, guidance=1.0), {}, net.config)
    seen = []

    def fn(x, t, cond):
        seen.append(cond.clone())
        return net(x, t, cond)

    idx = np.arange(4)
    seeds = np.array([row_seed(3, i) for i in idx])
    images, masks, _ = sample_pairs(fn, sch, cfg, Conditioning("pairs", [], None, ""), idx, seeds,
                                    net.config.resolution, 0, 2, torch.device("cpu"))
    k = condition_switch_step(sch, cfg.steps, 1.5)
    assert len(seen) == cfg.steps and 0 < k < cfg.steps
    fixed = labels_to_channels(torch.from_numpy(masks), Modality())
    d = net.config.data_channels
    for i, cond in enumerate(seen):
        known, indicator = cond[:, :d], cond[:, d:]
        if i < k:
            assert indicator.abs().sum() == 0
        else:
            assert torch.equal(indicator[:, 3:], torch.ones_like(indicator[:, 3:]))
            assert indicator[:, :3].abs().sum() == 0 and torch.equal(known[:, 3:], fixed)


def test_benchmark_scripts_never_modify_the_package():
    """A replay of old results restores and re-bundles models only inside a private worktree."""
    for script in sorted((ROOT / "benchmarks").glob("*.sh")):
        lines = script.read_text().splitlines()
        worktree = next((i for i, l in enumerate(lines) if re.search(r"git worktree add", l)), None)
        for i, line in enumerate(lines):
            code = line.split("#", 1)[0]
            if re.search(r"git (checkout|restore)\b.*fastsynth|fastsynth\.models\.bundle", code):
                assert worktree is not None and worktree < i, f"{script.name}:{i + 1}: {line.strip()}"


def test_resume_refuses_another_end_of_a_cosine_schedule(pair_folder, tmp_path):
    from fastsynth.config import TrainConfig
    from fastsynth.training import train

    cfg = TrainConfig(data=str(pair_folder), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=2,
                      batch_size=4, checkpoint_every=1, test_fraction=0.34, warmup_steps=1, lr_schedule="cosine")
    train(cfg, progress=False)
    from dataclasses import replace

    with pytest.raises(FastsynthError, match="cosine schedule down to 0 at step 2; resume with --steps 2"):
        train(replace(cfg, steps=4), resume=True, progress=False)
    train(replace(cfg, lr_schedule="constant", out=str(tmp_path / "c")), progress=False)
    train(replace(cfg, lr_schedule="constant", out=str(tmp_path / "c"), steps=3), resume=True, progress=False)
