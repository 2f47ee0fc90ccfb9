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


def test_min_snr_weighting_caps_the_low_noise_examples():
    from dataclasses import replace

    from fastsynth.training.train import weighted_loss

    pred, target = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    a = torch.tensor([0.999, 0.5]).view(-1, 1, 1, 1)  # SNR 999 and 1
    cfg = TrainConfig()
    assert weighted_loss(pred, target, a, cfg).item() == pytest.approx(1.0)
    ms = weighted_loss(pred, target, a, replace(cfg, loss_weighting="min-snr", min_snr_gamma=5.0)).item()
    assert ms == pytest.approx((5 / 1000 + 1 / 2) / 2)


def test_warm_start_from_a_saved_model(pair_folder, tmp_path):
    from dataclasses import replace

    first = train(_cfg(pair_folder, tmp_path / "a", 3), progress=False)
    src, _ = load_model(first)
    cfg = replace(_cfg(pair_folder, tmp_path / "b", 1), init_from=str(first), lr=1e-12, warmup_steps=1)
    out = train(cfg, progress=False)
    warm, meta = load_model(out)
    for (k, v), w in zip(src.unet.state_dict().items(), warm.unet.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6), k
    # recorded by name, not by where it lies (issue 9, point 7)
    assert meta["training"]["init"]["from"] == "a" and meta["training"]["init"]["steps_done"] == 3
    card = (out / "model" / "README.md").read_text()
    assert "Warm-started from" in card and "Steps trained: 1 in this run, 4 in all with the warm starts below" in card
    bad = replace(_cfg(pair_folder, tmp_path / "c", 1), init_from=str(first), resolution=32)
    with pytest.raises(FastsynthError, match="--init-from"):
        train(bad, progress=False)


def test_resume_keeps_the_warm_start_record_of_when_the_run_began(pair_folder, tmp_path):
    """--init-from names a model that may change before a --resume (``bundled`` is replaced by the run's own
    export): the record must still describe the weights the run started from."""
    import shutil
    from dataclasses import replace

    first = train(_cfg(pair_folder, tmp_path / "a", 3), progress=False)
    cfg = replace(_cfg(pair_folder, tmp_path / "b", 2), init_from=str(first))
    train(cfg, progress=False)
    other = train(_cfg(pair_folder, tmp_path / "other", 1), progress=False)
    shutil.rmtree(first / "model")
    shutil.copytree(other / "model", first / "model")  # the name now points at a 1-step model
    out = train(replace(cfg, steps=4), resume=True, progress=False)
    _, meta = load_model(out)
    assert meta["training"]["steps_done"] == 4
    assert meta["training"]["init"]["steps_done"] == 3


def test_bundle_records_provenance_evaluation_and_a_path_free_card(pair_folder, tmp_path):
    from fastsynth.models.bundle import bundle

    run = train(_cfg(pair_folder, tmp_path / "run", 2), progress=False)
    donor = tmp_path / "donor"
    net, meta = load_model(run)
    meta = {k: v for k, v in meta.items() if k != "path"}
    meta["training_data"] = {"name": "Tiny-SEG", "license": "cc0-1.0", "citation": "x", "url": None}
    from fastsynth.models import save_model

    save_model(net, donor, meta=meta)
    heldout = {"dice": 0.5, "iou": 0.4, "dice_seed_std": 0.01, "iou_seed_std": 0.01, "n": 2, "n_seeds": 3,
               "dice_per_seed": [0.49, 0.5, 0.51]}
    metrics = {"command": "fastsynth evaluate S --real R --downstream", "n_synthetic": 8,
               "downstream": {"runs": {"real": {"test": {"heldout": heldout}}}, "comparisons": []},
               "agreement": {"dice": 0.45, "dice_seed_std": 0.02, "dice_per_seed": [0.4], "real_heldout_dice": 0.5}}
    out = bundle(str(run), dest=tmp_path / "b", training_data_from=str(donor), evaluation=metrics)
    _, m = load_model(out)
    assert m["training_data"]["name"] == "Tiny-SEG" and m["stored_dtype"] == "float16"
    ev = m["evaluation"]["downstream"]
    assert ev["heldout"]["real"] == {"dice": 0.5, "iou": 0.4, "dice_seed_std": 0.01, "iou_seed_std": 0.01}
    assert ev["agreement"]["dice"] == 0.45 and "dice_per_seed" not in ev["agreement"]
    card = (out / "README.md").read_text()
    assert "license: cc0-1.0" in card and "Tiny-SEG" in card and str(tmp_path) not in card


def test_held_out_pairs_are_checked_before_training(pair_folder, tmp_path):
    from dataclasses import replace

    from fastsynth.data import make_split, scan_pairs

    cfg = _cfg(pair_folder, tmp_path / "run", 1)
    held = make_split(scan_pairs(pair_folder).stems, cfg.test_fraction, cfg.split_seed)["test"][0]
    bad = next((pair_folder / "images").glob(f"{held}.*"))
    bad.write_text("not an image")
    with pytest.raises(FastsynthError, match=bad.name):
        train(cfg, progress=False)
    out = train(replace(cfg, skip_bad=True, out=str(tmp_path / "run2")), progress=False)
    split = json.loads((out / "split.json").read_text())
    assert held not in split["test"] and held not in split["train"]
    assert held in (out / "skipped.json").read_text()
