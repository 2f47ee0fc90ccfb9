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
            writes_elsewhere = re.search(r"--dest\s+(?!\S*fastsynth/)\S+", code)  # not into the package
            if re.search(r"git (checkout|restore)\b.*fastsynth", code) or (
                    re.search(r"fastsynth\.models\.bundle", code) and not writes_elsewhere):
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


def _inpaint_like(tmp_path, mode="inpaint"):
    """A dataset folder whose rows name real source stems (from-masks / inpaint)."""
    from test_metrics import make_synth_dataset

    ds = make_synth_dataset(tmp_path / mode, n=6, shard_size=4, sources=[f"SCD0000101-00{i}" for i in range(6)])
    m = json.loads((ds / "fastsynth.json").read_text())
    m["mode"] = mode
    (ds / "fastsynth.json").write_text(json.dumps(m))
    return ds


def test_publish_refuses_real_pixels_unless_asked(tmp_path):
    from test_publish import GOOD, FakeHub

    from fastsynth.publish.hub import publish

    ds = _inpaint_like(tmp_path)
    hub = FakeHub()
    with pytest.raises(FastsynthError, match="keep the real source image's pixels.*--include-real-pixels"):
        publish(ds, "me/polyps", token=GOOD, api=hub, load_check=False)
    assert "me/polyps" not in hub.repos
    publish(ds, "me/polyps", token=GOOD, api=hub, load_check=False, include_real_pixels=True)
    card = hub.repos["me/polyps"]["files"]["README.md"].decode()
    body = card.split("\n---", 1)[1]  # after the YAML header
    assert "contains real image pixels" in body.strip().splitlines()[0] and "All 6 rows" in body


def test_publish_hashes_source_names_with_a_dataset_salt(tmp_path):
    import io

    import pyarrow.parquet as pq
    from test_publish import GOOD, FakeHub

    from fastsynth.publish.hub import publish

    ds = _inpaint_like(tmp_path, mode="from-masks")
    hub = FakeHub()
    publish(ds, "me/a", token=GOOD, api=hub, load_check=False)
    files = hub.repos["me/a"]["files"]
    up = [pq.read_table(io.BytesIO(files[k])).column("source").to_pylist() for k in sorted(files) if
          k.startswith("data/")]
    flat = [s for shard in up for s in shard]
    assert len(flat) == 6 and not any("SCD" in s for s in flat) and len(set(flat)) == 6
    assert all(s.startswith("src-") for s in flat) and ".publish-salt" not in files
    assert "SCD0000101-000" in pq.read_table(ds / "data" / "train-00000.parquet").column("source").to_pylist()
    n_commits = len(hub.commits)
    publish(ds, "me/a", token=GOOD, api=hub, load_check=False)  # the same salt: nothing new to upload
    assert len(hub.commits) == n_commits
    other = _inpaint_like(tmp_path / "other", mode="from-masks")  # another dataset: another salt
    publish(other, "me/b", token=GOOD, api=hub, load_check=False)
    up_b = pq.read_table(io.BytesIO(hub.repos["me/b"]["files"]["data/train-00000.parquet"])).column("source")
    assert up_b.to_pylist()[0] != flat[0]
    publish(ds, "me/c", token=GOOD, api=hub, load_check=False, keep_source_names=True)
    kept = pq.read_table(io.BytesIO(hub.repos["me/c"]["files"]["data/train-00000.parquet"])).column("source")
    assert kept.to_pylist()[0] == "SCD0000101-000"


def test_public_text_scrubs_relative_paths_of_commands():
    from fastsynth.utils import public_text

    t = public_text("`fastsynth train --data clinic/patients/kvasir --out runs/me/armD --lr 3e-4` then "
                    "`fastsynth evaluate out/ds --real runs/x/model`; 10 pairs/s into data/train-*.parquet, "
                    "--repo-id me/polyps, https://huggingface.co/datasets/a/b")
    for gone in ("clinic/", "patients", "runs/", "out/ds"):
        assert gone not in t, gone
    for kept in ("--data kvasir", "--out armD", "10 pairs/s", "data/train-*.parquet", "me/polyps",
                 "https://huggingface.co/datasets/a/b"):
        assert kept in t, kept


def test_auto_keeps_bf16_when_the_choice_never_measured_it(no_choice_after, monkeypatch):
    """``bench --choose`` with its default backends (eager, onnx) measures no OpenVINO bf16: a bf16 CPU keeps the
    measured ranking of its class for it instead of silently dropping to fp32."""
    pytest.importorskip("openvino")
    import fastsynth.utils as utils
    from test_bf16_cpu import _fake_gate

    from fastsynth.runtime import resolve_runtime
    from fastsynth.runtime.choice import write_choice
    from fastsynth.runtime.gates import record_data_level

    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    sha = "b2" * 32
    p = _fake_gate(sha)
    try:
        record_data_level(sha, 16, "openvino", {"ok": True, "note": "test"}, "bf16")
        write_choice({("onnx", "fp32"): 10.0, ("eager", "fp32"): 30.0}, 64, sha)
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("openvino", "bf16")
        write_choice({("onnx", "fp32"): 10.0, ("openvino", "bf16"): 12.0}, 64, sha)  # measured slower: fp32
        assert resolve_runtime("auto", "cpu", "auto", sha, 16) == ("onnx", "fp32")
    finally:
        for f in (p["gate"], p["data"]):
            f.unlink(missing_ok=True)


def test_a_failed_gate_lookup_is_said(monkeypatch, capsys):
    from fastsynth.runtime import gates

    def broken(*a, **k):
        raise RuntimeError("openvino metadata unreadable")

    monkeypatch.setattr(gates, "gate_paths", broken)
    assert gates.gate_status("ab" * 32, 16, "openvino", "bf16") is None
    err = capsys.readouterr().err
    assert "warning: no bf16 gate lookup on openvino" in err and "openvino metadata unreadable" in err


def test_resume_in_another_precision_is_refused_unless_asked(tiny_model_dir, tmp_path):
    out = tmp_path / "ds"
    cfg = dict(n=4, steps=2, batch_size=4, shard_size=4, backend="eager", sampler="ddim", redraw=False)
    generate(GenerateConfig(**cfg), out, model=str(tiny_model_dir), progress=False)
    m = json.loads((out / "fastsynth.json").read_text())
    assert (m["runtime_precision"], m["backend"]) == ("fp32", "eager")  # what ran, always recorded
    m["runtime_precision"] = "bf16"  # as if started on a bf16 machine
    (out / "fastsynth.json").write_text(json.dumps(m))
    with pytest.raises(FastsynthError, match="started in bf16 and would continue in fp32.*--allow-mixed-precision"):
        generate(GenerateConfig(**{**cfg, "n": 8}), out, model=str(tiny_model_dir), progress=False)
    generate(GenerateConfig(**{**cfg, "n": 8}), out, model=str(tiny_model_dir), progress=False,
             allow_mixed_precision=True)
    m = json.loads((out / "fastsynth.json").read_text())
    assert m["complete"] and m["shard_runtime"] == {"0": "eager:bf16", "1": "eager:fp32"}
    assert m["runtime_precision_started"] == "bf16"


def test_one_reader_path_for_every_modality(pair_folder):
    """8-bit RGB + binary masks are read by the same code as every other modality (no second RGB-only path)."""
    import fastsynth.data.pairs as pairs
    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.data.modality import Modality

    assert not any(hasattr(pairs, n) for n in ("_read_pair_rgb", "prepare_pair", "read_image", "load_mask_folder"))
    src = scan_pairs(pair_folder)
    a, b = load_pairs(src, 16), load_pairs(src, 16, modality=Modality())
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and set(np.unique(a[1][:, 3])) <= {0, 255}


@pytest.mark.parametrize("which", ["binary", "labels"])
def test_generate_format_nnunet(which, tiny_model_dir, tmp_path, request):
    """--format nnunet: an nnU-Net v2 raw dataset that passes the checks nnU-Net's verify_dataset_integrity makes
    (every label has its image CASE_0000.png, numTraining matches, labels consecutive from 0, label values known,
    the file ending), resumable like the other formats, and read back by evaluate."""
    from PIL import Image

    from fastsynth.metrics.io import load_synthetic

    if which == "labels":  # a 16-bit grey, 3-class label-map model
        from conftest import make_modality_folder
        from test_modality import _train

        model = _train(make_modality_folder(tmp_path / "g16", n=6, kind="I;16", classes=3), tmp_path / "run", steps=3)
    else:
        model = tiny_model_dir
    out = tmp_path / "Dataset901_Synth"
    cfg = dict(n=6, steps=2, batch_size=3, shard_size=3, backend="eager", sampler="ddim", redraw=False,
               format="nnunet")
    generate(GenerateConfig(**{**cfg, "n": 3}), out, model=str(model), progress=False)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3  # complete: written; extended below
    generate(GenerateConfig(**cfg), out, model=str(model), progress=False)
    d = json.loads((out / "dataset.json").read_text())
    labels = sorted((out / "labelsTr").glob("*.png"))
    images = sorted((out / "imagesTr").glob("*.png"))
    assert d["numTraining"] == len(labels) == len(images) == 6 and d["file_ending"] == ".png"
    assert sorted(d["labels"].values()) == list(range(len(d["labels"]))) and d["labels"]["background"] == 0
    for lab in labels:
        img = out / "imagesTr" / (lab.stem + "_0000.png")
        assert img.exists()
        la, im = np.array(Image.open(lab)), Image.open(img)
        assert set(np.unique(la).tolist()) <= set(d["labels"].values()) and la.shape == (im.height, im.width)
        if which == "labels":
            assert im.mode in ("I;16", "I;16B", "I") and d["channel_names"] == {"0": "grey"}  # 16-bit stays 16-bit
        else:
            assert im.mode == "RGB" and d["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    s = load_synthetic(out)
    assert len(s.images) == 6 and (set(np.unique(s.masks).tolist()) <= {0, 255} if which == "binary" else True)
    assert "nnUNetv2_plan_and_preprocess" in (out / "README.md").read_text()
