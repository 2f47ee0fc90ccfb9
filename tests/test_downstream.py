import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("segmentation_models_pytorch")

from fastsynth.errors import FastsynthError
from fastsynth.metrics import downstream as ds

TINY = ds.SegConfig(arch="unet", encoder="resnet18", encoder_weights=None, encoder_depth=3,
                    decoder_channels=(16, 8, 4), resolution=32, steps=6, batch_size=4, lr=3e-3, seed=0)


def _pairs(n: int, seed: int, res: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros((n, 4, res, res), np.uint8)
    a[:, :3] = rng.integers(0, 120, (n, 3, res, res))
    for i in range(n):
        y, x = rng.integers(6, res - 6, 2)
        a[i, :3, y - 5:y + 5, x - 5:x + 5] = 220
        a[i, 3, y - 5:y + 5, x - 5:x + 5] = 255
    return a


def test_example_stream_selects_the_protocols_data():
    rng = np.random.default_rng(0)
    real_only = ds.example_stream(100, np.arange(10), 0, 0.5, None, rng)
    assert (real_only[:, 0] == 0).all() and set(real_only[:, 1]) == set(range(10))
    syn_only = ds.example_stream(50, None, 7, 0.5, None, rng)
    assert (syn_only[:, 0] == 1).all() and set(syn_only[:, 1]) == set(range(7))
    sub = np.array([2, 5, 7])
    mixed = ds.example_stream(3000, sub, 40, 0.5, None, rng)
    assert set(mixed[mixed[:, 0] == 0, 1]) == {2, 5, 7}  # only the chosen real images
    frac = (mixed[:, 0] == 1).mean()
    assert abs(frac - 0.5 / 1.5) < 0.03  # each real image joined with probability alpha
    # with links: a real image is only ever joined by its own synthetic samples
    links = ds.synthetic_links(["a", "b", "c"], ["b", "a", "", "b", "x"])
    assert [v.tolist() for v in links] == [[1], [0, 3], []]
    lm = ds.example_stream(600, np.arange(3), 5, 0.5, links, rng)
    after = lm[1:][lm[1:, 0] == 1]
    prev = lm[:-1][lm[1:, 0] == 1]
    for (_, s), (_, r) in zip(after, prev):
        assert s in links[r]
    assert not (lm[:, 1][lm[:, 0] == 1] == 2).any() and not (lm[:, 1][lm[:, 0] == 1] == 4).any()


def test_low_data_subsets_are_nested_and_seeded():
    a16, a32 = ds.low_data_subset(200, 16, 0), ds.low_data_subset(200, 32, 0)
    assert len(set(a16)) == 16 and set(a16) <= set(a32)
    assert np.array_equal(a16, ds.low_data_subset(200, 16, 0))
    assert not np.array_equal(a16, ds.low_data_subset(200, 16, 1))
    plan = ds.protocol_plan(["real", "synthetic", "real+synthetic", "low-data"], (16, 32, 500), 200, True, 0)
    assert [p["name"] for p in plan] == ["real", "synthetic", "real+synthetic", "low-data-16",
                                         "low-data-16+synthetic", "low-data-32", "low-data-32+synthetic"]
    with pytest.raises(FastsynthError, match="needs synthetic"):
        ds.protocol_plan(["synthetic"], (), 10, False, 0)
    with pytest.raises(FastsynthError, match="unknown protocol"):
        ds.protocol_plan(["bogus"], (), 10, True, 0)


def test_low_data_by_groups_takes_whole_volumes():
    """--low-data-groups N: every image of N whole groups (volumes) and no other; nested, seeded, and refused when
    the real data has no groups or too few."""
    groups = [f"vol{k // 5:02d}" for k in range(40)] + ["vol99"] * 3  # 8 volumes of 5 slices, one of 3
    a, b = ds.low_data_groups_subset(groups, 2, 0), ds.low_data_groups_subset(groups, 4, 0)
    chosen = {groups[i] for i in a}
    assert len(chosen) == 2 and set(a) == {i for i, g in enumerate(groups) if g in chosen}
    assert set(a) <= set(b) and len({groups[i] for i in b}) == 4
    plan = ds.protocol_plan(("low-data",), (0,), len(groups), True, 0, low_data_groups=(2,), groups=groups)
    assert [r["name"] for r in plan] == ["low-data-2groups", "low-data-2groups+synthetic"]
    assert np.array_equal(plan[0]["real"], a) and plan[1]["synthetic"]
    with pytest.raises(FastsynthError, match="only 9 groups"):
        ds.low_data_groups_subset(groups, 10, 0)
    with pytest.raises(FastsynthError, match="needs the real data's groups"):
        ds.protocol_plan(("low-data",), (), len(groups), True, 0, low_data_groups=(2,), groups=None)


def test_dice_iou_from_counts():
    t = np.zeros((3, 4, 4), bool)
    p = np.zeros((3, 4, 4), bool)
    t[0, :2] = True
    p[0, :1] = True  # tp 4, fn 4, fp 0
    t[1, 0, 0] = True  # prediction empty: 0
    dice, iou = ds.dice_iou(p, t)  # image 2: both empty -> 1
    assert dice.tolist() == [pytest.approx(8 / 12), 0.0, 1.0]
    assert iou.tolist() == [pytest.approx(0.5), 0.0, 1.0]


def test_unknown_arch_lists_valid_names():
    with pytest.raises(FastsynthError, match="unetplusplus, unet, fpn, deeplabv3plus"):
        ds.build_model(dataclasses.replace(TINY, arch="segformer9"))


def test_training_is_deterministic_and_saved_models_reload(tmp_path):
    real, syn, test = _pairs(12, 0), _pairs(8, 1), _pairs(6, 2)
    m1, i1 = ds.train_segmenter(TINY, real, syn, np.arange(12))
    m2, i2 = ds.train_segmenter(TINY, real, syn, np.arange(12))
    s1, s2 = ds.score(m1, test), ds.score(m2, test)
    assert s1 == s2 and i1["final_loss"] == i2["final_loss"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    m3, i3 = ds.train_segmenter(dataclasses.replace(TINY, seed=1), real, syn, np.arange(12))
    assert i3["final_loss"] != i1["final_loss"]
    assert i1["encoder_weights_used"] is None and i1["n_examples_synthetic"] > 0
    out = ds.save_segmenter(m1, TINY, tmp_path / "seg", {"protocol": "real+synthetic", "scores": {"t": s1}})
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "fastsynth.json", "README.md"}
    m4, cfg4, meta = ds.load_segmenter(out)
    assert cfg4 == TINY and meta["protocol"] == "real+synthetic"
    assert np.array_equal(ds.predict(m4, test[:, :3]), ds.predict(m1, test[:, :3]))


@pytest.mark.slow
def test_benchmark_learns_on_easy_data(tmp_path):
    real, syn, test = _pairs(24, 0), _pairs(24, 1), _pairs(8, 2)
    cfg = dataclasses.replace(TINY, steps=60)
    r = ds.run_benchmark(cfg, real, [f"r{i}" for i in range(24)], syn, [""] * 24, {"held": test},
                         ("real", "synthetic", "real+synthetic"), save_dir=tmp_path, seeds=1)
    assert set(r["runs"]) == {"real", "synthetic", "real+synthetic"}
    assert r["runs"]["real"]["test"]["held"]["dice"] > 0.5  # bright squares are easy
    assert r["summary"]["held"]["synthetic_over_real_dice"] is not None
    assert (tmp_path / "real_plus_synthetic" / "model.safetensors").is_file()
    assert not any(p.name.endswith("-seed0") for p in tmp_path.iterdir())  # the lone default seed: bare names
    # one seed: nothing can be called a win or a loss
    assert {c["verdict"] for c in r["comparisons"]} == {"not distinguishable (1 seed)"}
    # label agreement: real-trained segmenters find the synthetic squares as well as the real ones
    ag = r["agreement"]
    assert ag["dice"] > 0.5 and ag["real_heldout_dice"] == r["runs"]["real"]["test"]["held"]["dice"]


def test_seeds_are_aggregated_and_real_runs_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    real, syn, test = _pairs(16, 0), _pairs(16, 1), _pairs(6, 2)
    logs = []
    args = (TINY, real, [f"r{i}" for i in range(16)], syn, [""] * 16, {"held": test},
            ("real", "synthetic", "low-data"))
    r1 = ds.run_benchmark(*args, low_data_n=(8,), seeds=2, log=logs.append)
    assert set(r1["runs"]) == {"real", "synthetic", "low-data-8", "low-data-8+synthetic"}
    run = r1["runs"]["real"]
    assert [s["seed"] for s in run["seeds"]] == [0, 1]
    per = [s["test"]["held"]["dice"] for s in run["seeds"]]
    agg = run["test"]["held"]
    assert agg["dice"] == pytest.approx(np.mean(per)) and agg["dice_seed_std"] == pytest.approx(np.std(per, ddof=1))
    assert {(c["candidate"], c["baseline"]) for c in r1["comparisons"]} == {
        ("synthetic", "real"), ("low-data-8+synthetic", "low-data-8")}
    assert not any("cache" in m for m in logs)
    # the same judge again (say, after it was stopped): every segmenter comes back from the cache, same scores
    logs.clear()
    r_again = ds.run_benchmark(*args, low_data_n=(8,), seeds=2, log=logs.append)
    assert sum("cache" in m for m in logs) == 8 and not any("training" in m for m in logs)
    assert all(r_again["runs"][k]["test"] == r1["runs"][k]["test"] for k in r1["runs"])
    # a second dataset judged against the same real data reuses the real-only segmenters (same scores) and
    # trains the ones that see its synthetic pairs
    logs.clear()
    other = (*args[:3], _pairs(16, 7), *args[4:])
    r2 = ds.run_benchmark(*other, low_data_n=(8,), seeds=2, log=logs.append)
    assert sum("cache" in m for m in logs) == 4  # real and low-data-8, two seeds each
    assert sum("training" in m for m in logs) == 4  # synthetic and low-data-8+synthetic, two seeds each
    assert r2["runs"]["real"]["test"] == r1["runs"]["real"]["test"]
    assert r2["runs"]["low-data-8"]["test"] == r1["runs"]["low-data-8"]["test"]
    # another alpha (the share of synthetic examples) changes only the runs that see synthetic pairs
    logs.clear()
    r3 = ds.run_benchmark(dataclasses.replace(TINY, alpha=1.0), *args[1:], low_data_n=(8,), seeds=2, log=logs.append)
    assert sum("cache" in m for m in logs) == 6  # real and low-data-8 (shared), synthetic only (alpha unused)
    assert sum("training" in m for m in logs) == 2  # low-data-8+synthetic, two seeds
    assert r3["runs"]["real"]["test"] == r1["runs"]["real"]["test"]
    with pytest.raises(FastsynthError, match="--seeds"):
        ds.run_benchmark(*args, seeds=0)


def test_single_seed_runs_of_other_seeds_save_apart(tmp_path, monkeypatch):
    """Judges of one dataset run side by side, one seed each (--seed S --seeds 1), keep every segmenter."""
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    real, syn, test = _pairs(12, 0), _pairs(12, 1), _pairs(4, 2)
    for seed in (0, 1, 2):
        ds.run_benchmark(dataclasses.replace(TINY, seed=seed), real, [f"r{i}" for i in range(12)], syn, [""] * 12,
                         {"held": test}, ("real",), save_dir=tmp_path / "segs", seeds=1)
    saved = sorted(p.name for p in (tmp_path / "segs").iterdir())
    assert saved == ["real", "real-seed1", "real-seed2"]
    seeds = [json.loads((tmp_path / "segs" / n / "config.json").read_text())["seed"] for n in saved]
    assert seeds == [0, 1, 2]


def test_compare_runs_calls_small_differences_not_distinguishable():
    def run(vals):
        return {"test": {"t": ds.aggregate([{"dice": v, "iou": v, "n": 10} for v in vals])}}

    base = run([0.60, 0.62, 0.64])
    assert ds.compare_runs(run([0.61, 0.64, 0.66]), base, "a", "b", "t")["verdict"] == "not distinguishable"
    better = ds.compare_runs(run([0.70, 0.72, 0.74]), base, "a", "b", "t")
    assert better["verdict"] == "better" and better["dice_delta"] == pytest.approx(0.10)
    assert ds.compare_runs(run([0.40, 0.42, 0.44]), base, "a", "b", "t")["verdict"] == "worse"
    # a large mean difference carried by one wild seed is not a result
    assert ds.compare_runs(run([0.60, 0.62, 0.95]), base, "a", "b", "t")["verdict"] == "not distinguishable"
    assert ds.compare_runs(run([0.9]), run([0.1]), "a", "b", "t")["verdict"].startswith("not distinguishable")


def test_label_agreement_scores_masks_against_predictions():
    import torch

    syn = _pairs(6, 3)

    def perfect(x):  # logits from the known squares: +10 inside the mask, -10 outside
        return torch.from_numpy(np.where(syn[:, 3:] >= 128, 10.0, -10.0).astype(np.float32))

    def empty(x):
        return torch.full((len(x), 1, 32, 32), -10.0)

    real_run = {"test": {"heldout": {"dice": 0.8}}}
    ag = ds.label_agreement([perfect, empty], syn, real_run)
    assert ag["dice_per_seed"] == [1.0, 0.0] and ag["dice"] == 0.5 and ag["ratio"] == pytest.approx(0.625)


def test_real_groups_come_from_the_split_file(tmp_path):
    import json

    from fastsynth.data import make_split
    from fastsynth.metrics.io import RealSet, real_groups

    stems = [f"vol{v}-s{k:03d}" for v in range(5) for k in range(4)]
    split = make_split(stems, 0.2, 0, group_by=r"^(.*)-s\d+$")
    (tmp_path / "split.json").write_text(json.dumps(split))
    rs = RealSet("x", str(tmp_path / "split.json"), split["train"], split["test"])
    g = real_groups(rs)
    assert g == [s.split("-s")[0] for s in split["train"]] and len(set(g)) == 4
    assert real_groups(RealSet("x", None, split["train"], split["test"])) is None


def test_synthetic_then_real_fine_tunes_the_synthetic_runs_segmenter(tmp_path, monkeypatch):
    """The synthetic-then-real run starts from the synthetic run's segmenter of the same seed (taken from the cache
    when there, trained and cached when not) and trains it on the real images; it is compared with real alone."""
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    real, syn, test = _pairs(16, 0), _pairs(16, 1), _pairs(6, 2)
    args = (TINY, real, [f"r{i}" for i in range(16)], syn, [""] * 16, {"held": test})
    logs = []
    # real + synthetic first: its segmenters (the same synthetic data and real images) must not pass for the fine-tuned
    r = ds.run_benchmark(*args, ("real", "real+synthetic", "synthetic-then-real"), seeds=2, log=logs.append)
    assert set(r["runs"]) == {"real", "real+synthetic", "synthetic-then-real"}
    assert sum("to fine-tune" in m for m in logs) == 2 and sum("fine-tuning it" in m for m in logs) == 2
    assert not any("cache" in m for m in logs)
    seeds = r["runs"]["synthetic-then-real"]["seeds"]
    assert all(s["encoder_weights_used"] == "fine-tuned" and s["n_examples_synthetic"] == 0 for s in seeds)
    assert {(c["candidate"], c["baseline"]) for c in r["comparisons"]} == {("synthetic-then-real", "real"),
                                                                           ("real+synthetic", "real")}
    assert "synthetic_then_real_minus_real_dice" in r["summary"]["held"]

    # the fine-tuned segmenter is not the real-only one: same seed, same real stream, another start
    fine = r["runs"]["synthetic-then-real"]["test"]["held"]["dice_per_seed"]
    assert fine != r["runs"]["real"]["test"]["held"]["dice_per_seed"]
    # the synthetic run's segmenters were cached on the way: judging 'synthetic' now trains nothing; the fine-tuned
    # ones come back from the cache too
    logs.clear()
    r2 = ds.run_benchmark(*args, ("synthetic", "synthetic-then-real"), seeds=2, log=logs.append)
    assert not any("training" in m or "fine-tuning" in m for m in logs)
    assert r2["runs"]["synthetic-then-real"]["test"] == r["runs"]["synthetic-then-real"]["test"]

    # the fine-tune really starts from the given weights
    base, _ = ds.train_segmenter(TINY, None, syn)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    zero = dataclasses.replace(TINY, steps=1, lr=1e-12)
    tuned, info = ds.train_segmenter(zero, real, None, np.arange(16), init_state=state)
    drift = max(float((a.float() - b.float()).abs().max()) for (n, a), b in
                zip(tuned.state_dict().items(), state.values()) if "running" not in n and "num_batches" not in n)
    assert drift < 1e-4 and info["encoder_weights_used"] == "fine-tuned"


def test_unused_encoder_stages_are_not_stored_and_old_folders_still_load(tmp_path):
    """A depth-4 resnet encoder never runs layer4: it is not stored (the shipped segmenter is 3.6 M parameters, not
    12 M), and a folder written with it (older versions) loads to the same predictions."""
    import torch
    from safetensors.torch import load_file, save_file

    cfg = ds.SegConfig(encoder_weights=None, resolution=32)
    torch.manual_seed(0)
    model, _ = ds.build_model(cfg)
    folder = ds.save_segmenter(model, cfg, tmp_path / "new")
    assert not any(k.startswith("encoder.layer4.") for k in load_file(str(folder / ds.WEIGHTS_NAME)))
    old = tmp_path / "old"
    import shutil

    shutil.copytree(folder, old)
    state = load_file(str(old / ds.WEIGHTS_NAME))
    state["encoder.layer4.0.conv1.weight"] = torch.zeros(512, 256, 3, 3)  # what older versions stored
    save_file(state, str(old / ds.WEIGHTS_NAME))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = ds.load_segmenter(folder)[0](x)
        b = ds.load_segmenter(old)[0](x)
    assert torch.equal(a, b)
    state["decoder.extra"] = torch.zeros(1)  # anything else that does not fit is still refused
    save_file(state, str(old / ds.WEIGHTS_NAME))
    with pytest.raises(FastsynthError, match="do not match"):
        ds.load_segmenter(old)
