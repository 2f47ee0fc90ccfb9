"""Progressive distillation: the target maths, the nested grids, the command, and exact resume."""

import json

import pytest
import torch

from fastsynth.config import DistillConfig
from fastsynth.errors import FastsynthError
from fastsynth.sampling.samplers import GridDDIM, grid_timesteps, resolve_sampler
from fastsynth.training.distill import distill, distill_loss, pd_target, round_grid, round_steps


def test_grids_nest_and_match_diffusers_trailing_ddim():
    import numpy as np

    for k in (1, 2, 3, 4, 8, 16):
        assert grid_timesteps(1000, k) == grid_timesteps(1000, 2 * k)[::2]
    for k in (4, 6, 10):  # the same points diffusers' DDIM uses with timestep_spacing="trailing"
        ref = (np.round(np.arange(1000, 0, -1000 / k)).astype(int) - 1).tolist()
        assert grid_timesteps(1000, k) == ref
    fine, grid = round_grid(1000, 4)
    assert fine.tolist()[-1] == -1 and len(fine) == 9 and grid == fine.tolist()[:-1][::2]


def test_round_steps():
    assert round_steps(16, 4) == [8, 4]
    assert round_steps(8, 1) == [4, 2, 1]
    for bad in ((12, 4), (4, 4), (2, 4), (8, 0)):
        with pytest.raises(FastsynthError):
            round_steps(*bad)


@pytest.mark.parametrize("clean_end", [False, True])
def test_pd_target_makes_one_student_step_land_on_the_teacher(clean_end):
    """A v-prediction that implies x0 = pd_target(...) takes the sampler from z_t exactly to z_s."""
    g = torch.Generator().manual_seed(0)
    grid = [999, 749, 499, 249]
    sch = GridDDIM(grid)
    i = 3 if clean_end else 1
    t, s = grid[i], (grid[i + 1] if i + 1 < len(grid) else -1)
    ac = sch.alphas_cumprod
    a_t = ac[t]
    a_s = ac[s] if s >= 0 else torch.tensor(1.0)
    z_t, z_s = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    x_tilde = pd_target(z_t, z_s, a_t, a_s)
    v = (a_t.sqrt() * z_t - x_tilde) / (1 - a_t).sqrt()
    stepped = sch.step(v, torch.tensor(t), z_t)[0]
    assert torch.allclose(stepped, z_s, atol=1e-4)


def test_resolve_sampler_uses_the_models_grid():
    meta = {"sampling": {"sampler": "distilled", "steps": 2, "grid": [999, 499]}}
    assert resolve_sampler(None, None, meta) == ("distilled", 2, [999, 499])
    assert resolve_sampler("unipc", None, meta) == ("unipc", 6, None)
    assert resolve_sampler(None, None, {}) == ("unipc", 6, None)
    with pytest.raises(FastsynthError, match="exactly 2 steps"):
        resolve_sampler(None, 4, meta)
    with pytest.raises(FastsynthError, match="not made by `fastsynth distill`"):
        resolve_sampler("distilled", None, {})


def test_distillation_objective_can_be_minimised(tiny_model_dir):
    """On a fixed batch the student's loss falls well below where it starts (student = teacher)."""
    import copy

    from diffusers import DDPMScheduler

    from fastsynth.models import load_model

    teacher, _ = load_model(tiny_model_dir)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 4, 16, 16, generator=g) * 2 - 1
    cond = torch.zeros(8, 8, 16, 16)
    eps = torch.randn(8, 4, 16, 16, generator=g)
    j = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    fine, _ = round_grid(1000, 2)
    ac = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.float()
    ac_ext = torch.cat([ac, torch.ones(1)])
    off = torch.autocast("cpu", enabled=False)
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = distill_loss(student, teacher, x0, cond, eps, j, fine, ac_ext, "v_prediction", lambda: off)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 0 and losses[-1] < 0.5 * losses[0]


def _cfg(tiny_model_dir, out, **kw):
    base = dict(teacher=str(tiny_model_dir), out=str(out), teacher_steps=4, student_steps=1, steps_per_round=3,
                batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=100, log_every=1)
    return DistillConfig(**{**base, **kw})


def test_distill_writes_students_that_generate(tiny_model_dir, tmp_path, capsys):
    from fastsynth.cli import main

    out = distill(_cfg(tiny_model_dir, tmp_path / "pd"), progress=False, device="cpu")
    for name in ("round-1-2steps", "round-2-1steps", "model"):
        assert (out / name / "model.safetensors").exists()
    meta = json.loads((out / "model" / "fastsynth.json").read_text())
    assert meta["sampling"] == {"sampler": "distilled", "steps": 1, "grid": [999]}
    assert meta["distillation"]["rounds_done"] == 2
    r1 = json.loads((out / "round-1-2steps" / "fastsynth.json").read_text())
    assert r1["sampling"]["grid"] == [999, 499]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(r["loss"] == r["loss"] for r in log)
    # the students differ from the teacher and from each other
    from safetensors.torch import load_file

    w0 = load_file(str(tiny_model_dir / "model.safetensors"))
    w1 = load_file(str(out / "round-1-2steps" / "model.safetensors"))
    w2 = load_file(str(out / "model" / "model.safetensors"))
    assert any(not torch.equal(w0[k].float(), w1[k]) for k in w0) and any(not torch.equal(w1[k], w2[k]) for k in w1)

    ds = tmp_path / "ds"
    assert main(["generate", "--model", str(out), "--n", "4", "--out", str(ds), "--backend", "eager",
                 "--no-progress"]) == 0
    manifest = json.loads((ds / "fastsynth.json").read_text())
    assert manifest["sampler"] == "distilled" and manifest["steps"] == 1
    capsys.readouterr()
    assert main(["info", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "distilled x1" in text and "DDIM 4 -> 1 steps" in text


def test_distill_resume_is_exact(tiny_model_dir, tmp_path):
    """Stopping after every step (crossing the round boundary) and resuming gives the uninterrupted student."""
    from safetensors.torch import load_file

    full = distill(_cfg(tiny_model_dir, tmp_path / "full"), progress=False, device="cpu")
    cfg = _cfg(tiny_model_dir, tmp_path / "parts")
    distill(cfg, time_limit_min=1e-9, progress=False, device="cpu")
    for _ in range(10):
        if (tmp_path / "parts" / "model").exists():
            break
        distill(cfg, resume=True, time_limit_min=1e-9, progress=False, device="cpu")
    a = load_file(str(full / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "parts" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distill_cli_errors(tiny_model_dir, tmp_path, capsys):
    from fastsynth.cli import main

    rc = main(["distill", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--teacher-steps", "12",
               "--student-steps", "4"])
    assert rc == 2 and "power of two" in capsys.readouterr().err
    rc = main(["distill", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "y")])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    out = tmp_path / "z"
    distill(_cfg(tiny_model_dir, out, steps_per_round=1), progress=False, device="cpu")
    rc = main(["distill", "--model", str(tiny_model_dir), "--out", str(out), "--teacher-steps", "4",
               "--student-steps", "1", "--steps-per-round", "1"])
    assert rc == 2 and "--resume" in capsys.readouterr().err
