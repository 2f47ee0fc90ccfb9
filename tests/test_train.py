import json

import pytest
import torch
from safetensors.torch import load_file

from fastsynth.config import TrainConfig
from fastsynth.errors import FastsynthError
from fastsynth.models import load_model
from fastsynth.training import train
from fastsynth.training.train import make_batch, _step_generator


def _cfg(data, out, steps):
    return TrainConfig(data=str(data), out=str(out), preset="tiny", resolution=16, steps=steps, batch_size=4,
                       checkpoint_every=2, log_every=1, test_fraction=0.34, warmup_steps=2)


def test_train_writes_run_and_model(pair_folder, tmp_path):
    out = train(_cfg(pair_folder, tmp_path / "run", 3), progress=False)
    split = json.loads((out / "split.json").read_text())
    assert len(split["test"]) == 2 and len(split["train"]) == 4
    assert (out / "checkpoint" / "state.json").exists()
    logs = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3] and all(r["loss"] > 0 for r in logs)
    net, meta = load_model(out)  # a run dir loads as its EMA model
    assert net.config.resolution == 16 and meta["training"]["steps_done"] == 3
    assert meta["training"]["n_train"] == 4


def test_resume_is_exact(pair_folder, tmp_path):
    train(_cfg(pair_folder, tmp_path / "a", 4), progress=False)
    train(_cfg(pair_folder, tmp_path / "b", 2), progress=False)
    train(_cfg(pair_folder, tmp_path / "b", 4), resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoint" / name))
        b = load_file(str(tmp_path / "b" / "checkpoint" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


def test_resume_from_a_checkpoint_swap_interrupted_by_a_kill(pair_folder, tmp_path):
    train(_cfg(pair_folder, tmp_path / "a", 4), progress=False)
    train(_cfg(pair_folder, tmp_path / "b", 2), progress=False)
    ck = tmp_path / "b" / "checkpoint"
    ck.rename(ck.with_name("checkpoint.old"))  # killed between the two renames of the swap
    train(_cfg(pair_folder, tmp_path / "b", 4), resume=True, progress=False)
    a = load_file(str(tmp_path / "a" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_needs_resume_and_same_settings(pair_folder, tmp_path):
    train(_cfg(pair_folder, tmp_path / "a", 1), progress=False)
    with pytest.raises(FastsynthError, match="add --resume"):
        train(_cfg(pair_folder, tmp_path / "a", 2), progress=False)
    bad = TrainConfig(**{**_cfg(pair_folder, tmp_path / "a", 2).__dict__, "lr": 1.0})
    with pytest.raises(FastsynthError, match="different settings"):
        train(bad, resume=True, progress=False)


def test_batches_mix_all_three_modes(pair_folder):
    import numpy as np

    from fastsynth.data import load_pairs, scan_pairs

    _, arr = load_pairs(scan_pairs(pair_folder), 16)
    cfg = TrainConfig(p_pairs=1, p_from_masks=1, p_inpaint=1)
    x0, known, ind = make_batch(torch.from_numpy(arr), cfg, _step_generator(0, 0, 0), 64, 1)
    kinds = set()
    for i in range(64):
        s = ind[i].flatten(1).mean(1)
        if s.sum() == 0:
            kinds.add("pairs")
        elif s[:3].sum() == 0 and s[3] == 1:
            kinds.add("from-masks")
        else:
            assert torch.equal(ind[i, 0], ind[i, 3]) and 0 < s[0] < 1
            kinds.add("inpaint")
        assert torch.equal(known[i], x0[i] * ind[i])
    assert kinds == {"pairs", "from-masks", "inpaint"}
