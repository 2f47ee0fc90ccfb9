"""Latent models: the bundled autoencoder, the mask in the latent grid, training on the latent cache, and every mode
of generate through the model's space (tiny networks at 64x64: an 8x8 latent grid)."""

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsynth.config import GenerateConfig, TrainConfig
from fastsynth.data.codec import labels_to_channels
from fastsynth.data.modality import Modality
from fastsynth.errors import FastsynthError
from fastsynth.models.autoencoder import AUTOENCODERS, autoencoder_sha256, load_autoencoder
from fastsynth.models.latent import MASK_REPRS, grid_to_logits, labels_to_grid
from fastsynth.training import train
from fastsynth.pipeline import generate
from fastsynth.training.mask_codec import round_trip_iou

from conftest import REAL_DATA, make_pair_folder


def _smooth_images(n=4, size=64, seed=0):
    """Smooth RGB images in [-1, 1] with a bright disc: what the autoencoder reconstructs well."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        a, b, c = (torch.rand(3, generator=g) - 0.5).tolist()
        base = torch.stack([0.3 + a * xx, -0.2 + b * yy, -0.4 + c * xx * yy])
        cy, cx = (torch.rand(2, generator=g) - 0.5).tolist()
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < 0.12).float()
        out.append((base + 0.4 * disc).clamp(-1, 1))
    return torch.stack(out)


def _psnr(a, b):
    mse = ((a - b) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def test_autoencoder_loads_strictly_and_round_trips():
    ae = load_autoencoder("taef2")
    x = _smooth_images()
    z = ae.encode(x)
    assert z.shape == (4, 32, 8, 8)
    y = ae.decode(z)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert _psnr(y, x).min() > 28  # measured 31-33 dB on these images



def test_autoencoder_calls_are_small_on_a_cpu_and_do_not_change_the_result():
    """A CPU runs the autoencoder 2 images per call (at 256² a call of 16 holds ~400 MB more and is no faster); a GPU
    up to 16; the chunking does not change what comes out."""
    from fastsynth.models.autoencoder import CPU_AE_BATCH, ae_batch_size

    assert ae_batch_size("cpu", 16) == CPU_AE_BATCH == 2 and ae_batch_size("cpu", 1) == 1
    assert ae_batch_size("cuda", 64) == 16 and ae_batch_size("cuda", 5) == 5
    ae = load_autoencoder("taef2")
    x = _smooth_images()
    z = ae.encode(x)
    assert torch.allclose(z, ae.encode(x, batch_size=4), atol=1e-5)
    assert torch.allclose(ae.decode(z), ae.decode(z, batch_size=4), atol=1e-5)

def test_autoencoder_greyscale_in_and_out():
    ae = load_autoencoder("taef2", channels=1)
    x = _smooth_images()[:, :1]
    y = ae.decode(ae.encode(x))
    assert y.shape == x.shape and _psnr(y, x).min() > 28


def test_autoencoder_rejects_mismatched_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    d = tmp_path / "taef2"
    shutil.copytree(AUTOENCODERS["taef2"], d)
    monkeypatch.setitem(AUTOENCODERS, "taef2", d)
    state = load_file(str(d / "decoder.safetensors"))
    state.pop(sorted(state)[0])
    save_file(state, str(d / "decoder.safetensors"))
    with pytest.raises(FastsynthError, match="decoder.safetensors: weights do not match"):
        load_autoencoder("taef2")


def test_autoencoder_hash_is_checked():
    with pytest.raises(FastsynthError, match="trained on autoencoder 'taef2' with weights sha256 000000"):
        load_autoencoder("taef2", sha256="0" * 64)
    assert len(autoencoder_sha256("taef2")) == 64


@pytest.mark.realdata
def test_autoencoder_round_trip_on_kvasir():
    if not REAL_DATA.exists():
        pytest.skip("../shared/data/kvasir-seg is absent")
    from PIL import Image

    from fastsynth.data.pairs import center_crop_resize

    files = sorted((REAL_DATA / "images").glob("*.jpg"))[:4]
    x = torch.stack([torch.from_numpy(np.array(center_crop_resize(Image.open(f).convert("RGB"), 256,
                                                                  Image.BICUBIC))).permute(2, 0, 1) for f in files])
    x = x.float() / 127.5 - 1
    ae = load_autoencoder("taef2")
    assert _psnr(ae.decode(ae.encode(x)), x).mean() > 31  # 33.0 dB over 16 images (weights/taef2/README.md)


def _disc_labels(n=6, size=64, classes=2, seed=0, radius=(6, 14), ring=4):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx, r = rng.integers(16, size - 16), rng.integers(16, size - 16), rng.integers(*radius)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        for k in range(classes - 1, 0, -1):
            out[i][d2 <= (r + ring * (k - 1)) ** 2] = k
    if classes == 2:
        out = out * 255
    return torch.from_numpy(out)


@pytest.mark.parametrize("repr_", ["pool", "s2d"])
@pytest.mark.parametrize("classes", [2, 3])
def test_mask_grid_round_trip(repr_, classes):
    m = Modality(channels=3, class_names=None if classes == 2 else ("bg", "a", "b"))
    lab = _disc_labels(size=128, classes=classes, radius=(14, 30), ring=12)  # polyp-sized structures at 128^2
    grid = labels_to_grid(labels_to_channels(lab, m), repr_)
    assert grid.shape[-1] == 16 and grid.abs().max() <= 1
    iou = round_trip_iou(lab, m, lambda ch: labels_to_grid(ch, repr_), lambda g: grid_to_logits(g, repr_))
    assert iou.min() > (0.9 if repr_ == "pool" else 0.95), iou


def test_small_structures_survive_s2d_not_pool():
    """A structure a latent cell wide is lost by pooling and kept by the 4x-finer space-to-depth grid."""
    m = Modality()
    lab = _disc_labels(size=64, radius=(4, 7))
    ious = {r: round_trip_iou(lab, m, lambda ch: labels_to_grid(ch, r), lambda g: grid_to_logits(g, r)).mean()
            for r in ("pool", "s2d")}
    assert ious["s2d"] > 0.9 and ious["pool"] < ious["s2d"] - 0.1, ious


def test_mask_codec_learns_a_round_trip():
    from fastsynth.training.mask_codec import train_mask_codec

    m = Modality()
    lab = _disc_labels(n=16)
    codec, info = train_mask_codec(lab[:, None], m, steps=150, batch_size=8, lr=5e-3, progress=False)
    iou = round_trip_iou(lab, m, codec.encode, codec.decode)
    assert iou.mean() > 0.8 and info["steps"] == 150


def _latent_cfg(data, out, steps=3, **kw):
    return TrainConfig(data=str(data), out=str(out), preset="tiny", resolution=64, steps=steps, batch_size=4,
                       checkpoint_every=100, log_every=1, test_fraction=0.25, warmup_steps=2, latent="taef2", **kw)


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    data = make_pair_folder(root / "data", n=8, size=(64, 64))
    train(_latent_cfg(data, root / "run", steps=4), progress=False)
    return data, root / "run"


def test_latent_run_records_its_autoencoder_and_statistics(latent_run):
    from fastsynth.models import load_model

    _, run = latent_run
    net, meta = load_model(run)
    c = net.config
    assert c.autoencoder == "taef2" and c.autoencoder_sha256 == autoencoder_sha256("taef2")
    assert c.grid == 8 and c.data_channels == 33 and c.mask_repr == "pool"
    assert len(c.latent_mean) == 32 and all(s > 0 for s in c.latent_std)
    assert meta["latent"]["flip_variants"] == 2 and 0.5 < meta["latent"]["mask_round_trip_iou_train"]["mean"] <= 1


def test_latent_training_reads_the_cache_not_the_autoencoder(latent_run, tmp_path, monkeypatch):
    """A second run on the same data finds the cache: the encoder never runs (and never in the training loop)."""
    from fastsynth.models import autoencoder

    data, _ = latent_run

    def boom(*a, **k):
        raise AssertionError("the autoencoder ran")

    monkeypatch.setattr(autoencoder.Autoencoder, "encode", boom)
    train(_latent_cfg(data, tmp_path / "again", steps=2), progress=False)


def test_a_grey_latent_run_warm_starts_from_an_rgb_latent_model(latent_run, tmp_path):
    """The same network on other data: grey ultrasound into the same latent grid as RGB polyps. The data's own
    description (channels, latent statistics) differs; the weights carry over and the card says where from."""
    from conftest import make_modality_folder
    from fastsynth.models import load_model

    _, rgb_run = latent_run
    grey = make_modality_folder(tmp_path / "grey", n=8, size=(64, 64), kind="L")
    src, _ = load_model(rgb_run)
    out = train(_latent_cfg(grey, tmp_path / "g", steps=1, init_from=str(rgb_run), lr=1e-12), progress=False)
    warm, meta = load_model(out)
    assert warm.config.image_channels == 1 and src.config.image_channels == 3
    assert warm.config.latent_mean != src.config.latent_mean
    for (k, v), w in zip(src.unet.state_dict().items(), warm.unet.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6), k
    assert meta["training"]["init"]["data"] == "data"  # the start's data folder by name
    assert "trained on `data`" in (out / "model" / "README.md").read_text()
    with pytest.raises(FastsynthError, match="mask_repr pool there, s2d here"):
        train(_latent_cfg(grey, tmp_path / "h", steps=1, init_from=str(rgb_run), mask_repr="s2d"), progress=False)


def test_latent_batch_conditioning(latent_run):
    """make_batch on latents: from-masks knows exactly the mask grid, inpaint keeps the cells outside the region."""
    from fastsynth.models.autoencoder import load_autoencoder as load_ae
    from fastsynth.models.latent import LatentSpace
    from fastsynth.models import load_model
    from fastsynth.training.latent_cache import LatentData, build_latent_cache
    from fastsynth.training.train import _step_generator, make_batch
    from fastsynth.data import load_pairs, scan_pairs

    data, run = latent_run
    net, _ = load_model(run)
    stems, arr = load_pairs(scan_pairs(data), 64)
    cache = build_latent_cache(arr, Modality(), load_ae("taef2"), True, False, progress=False)
    space = LatentSpace(net.config)
    ld = LatentData(cache, space, Modality())
    cfg = replace(_latent_cfg(data, run), p_pairs=0, p_from_masks=1, p_inpaint=0)
    x0, known, ind = make_batch(ld, cfg, _step_generator(0, 0, 0), 6, 5, Modality(), space)
    assert x0.shape == (6, 33, 8, 8)
    assert torch.equal(ind[:, 32:], torch.ones_like(ind[:, 32:])) and ind[:, :32].abs().sum() == 0
    assert torch.equal(known[:, 32:], x0[:, 32:])
    cfg = replace(cfg, p_from_masks=0, p_inpaint=1)
    x0, known, ind = make_batch(ld, cfg, _step_generator(0, 1, 0), 6, 5, Modality(), space)
    assert 0 < ind.mean() < 1 and torch.equal(known, x0 * ind)


def _gen(model, out, mode="pairs", **kw):
    from fastsynth.pipeline import generate

    cfg = GenerateConfig(n=5, batch_size=3, shard_size=4, mode=mode, sampler="unipc", steps=3, backend="eager",
                         precision="fp32")
    return generate(cfg, out, model=str(model), progress=False, **kw)


def _rows(out):
    from fastsynth.metrics.io import load_synthetic

    return load_synthetic(out)


def test_latent_pairs_are_full_resolution_and_exact_masks(latent_run, tmp_path):
    _, run = latent_run
    _gen(run, tmp_path / "g")
    s = _rows(tmp_path / "g")
    assert s.images.shape == (5, 64, 64, 3) and s.masks.shape == (5, 64, 64)
    assert set(np.unique(s.masks)) <= {0, 255}
    man = json.loads((tmp_path / "g" / "fastsynth.json").read_text())
    assert man["latent"]["autoencoder"] == "taef2" and man["latent"]["grid"] == 8
    assert man["latent"]["decoder"] == {"backend": "eager", "precision": "fp32"}
    assert "TAEF2 tiny autoencoder (MIT" in (tmp_path / "g" / "README.md").read_text()  # the card names it


def test_latent_rows_do_not_depend_on_the_batch(latent_run, tmp_path):
    from fastsynth.pipeline import generate

    _, run = latent_run
    _gen(run, tmp_path / "a")
    cfg = GenerateConfig(n=5, batch_size=5, shard_size=4, sampler="unipc", steps=3, backend="eager", precision="fp32")
    generate(cfg, tmp_path / "b", model=str(run), progress=False)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert np.abs(a.images.astype(int) - b.images.astype(int)).max() <= 1
    assert (a.masks != b.masks).mean() < 0.01


def test_latent_from_masks_keeps_the_given_mask(latent_run, tmp_path):
    data, run = latent_run
    _gen(run, tmp_path / "fm", mode="from-masks", masks=str(data / "masks"))
    s = _rows(tmp_path / "fm")
    from PIL import Image

    for src, mask in zip(s.source, s.masks):
        given = np.array(Image.open(data / "masks" / f"{src}.png"))
        assert np.array_equal(mask, np.where(given >= 128, 255, 0))


def test_latent_inpaint_copies_every_pixel_outside_the_region(latent_run, tmp_path):
    from fastsynth.conditioning import dilate_px_for, inpaint_region
    from PIL import Image

    data, run = latent_run
    _gen(run, tmp_path / "ip", mode="inpaint", images=str(data))
    s = _rows(tmp_path / "ip")
    dil = dilate_px_for(64, GenerateConfig().inpaint_dilate_px_at_256)
    for src, img, mask in zip(s.source, s.images, s.masks):
        real = np.array(Image.open(data / "images" / f"{src}.png").convert("RGB"))
        real_mask = np.array(Image.open(data / "masks" / f"{src}.png"))
        region = inpaint_region(labels_to_channels(torch.from_numpy(real_mask)[None], Modality()), dil)[0, 0]
        outside = region.numpy() == 0
        assert outside.any() and np.array_equal(img[outside], real[outside])
        assert np.array_equal(mask[outside], np.where(real_mask >= 128, 255, 0)[outside])
        assert (img[~outside] != real[~outside]).any()  # the region was regenerated


@pytest.mark.onnx
def test_latent_decoder_backends_agree(latent_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from fastsynth.models import load_model
    from fastsynth.models.latent import LatentSpace
    from fastsynth.runtime.decoder import make_decoder_fn

    _, run = latent_run
    net, _ = load_model(run)
    space = LatentSpace(net.config)
    z = torch.randn(3, 32, 8, 8)
    ref = make_decoder_fn(space.ae.decoder, space.ae.sha256, 8, "eager")(z)
    onnx = make_decoder_fn(space.ae.decoder, space.ae.sha256, 8, "onnx")(z)
    assert onnx.shape == (3, 3, 64, 64) and (onnx - ref).abs().max() < 1e-3
    # the encoder on the same backends (the cascade encodes every batch): grey images replicated inside the graph
    from fastsynth.runtime.decoder import make_encoder_fn

    for c in (3, 1):
        x = torch.rand(3, c, 64, 64) * 2 - 1
        e_ref = make_encoder_fn(space.ae.encoder, space.ae.sha256, c, 64, "eager")(x)
        e_onnx = make_encoder_fn(space.ae.encoder, space.ae.sha256, c, 64, "onnx")(x)
        assert e_onnx.shape == (3, 32, 8, 8) and (e_onnx - e_ref).abs().max() < 1e-3


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fastsynth", *args], capture_output=True, text=True)


def test_latent_bad_input_one_line_exit_2(tmp_path):
    data = make_pair_folder(tmp_path / "data", n=4, size=(64, 64))
    r = _cli("train", "--data", str(data), "--out", str(tmp_path / "r"), "--latent", "taef2", "--resolution", "100",
             "--steps", "1")
    assert r.returncode == 2 and "multiple of 8" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()
    r = _cli("train", "--data", str(data), "--out", str(tmp_path / "r"), "--latent", "taef2", "--resolution", "56",
             "--steps", "1")
    assert r.returncode == 2 and "at least 64" in r.stderr


def test_latent_model_with_another_autoencoder_is_refused(latent_run, tmp_path):
    _, run = latent_run
    model = tmp_path / "m"
    shutil.copytree(run / "model", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["autoencoder_sha256"] = "f" * 64
    (model / "config.json").write_text(json.dumps(cfg))
    r = _cli("generate", "--model", str(model), "--n", "2", "--out", str(tmp_path / "g"), "--backend", "eager")
    assert r.returncode == 2 and "sha256 ffffffffffff" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "g").exists()


@pytest.mark.slow
def test_latent_ae_mask_repr_trains_and_generates(tmp_path):
    data = make_pair_folder(tmp_path / "data", n=6, size=(64, 64))
    train(_latent_cfg(data, tmp_path / "run", steps=2, mask_repr="ae", mask_codec_steps=20), progress=False)
    assert (tmp_path / "run" / "model" / "mask_codec.safetensors").exists()
    _gen(tmp_path / "run", tmp_path / "g")
    assert set(np.unique(_rows(tmp_path / "g").masks)) <= {0, 255}


def test_latent_bf16_gate_measures_denoiser_and_decoder(latent_run, tmp_path):
    """The accuracy gate of a latent model runs the whole output (denoiser and decoder) in the tested precision."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from fastsynth.utils import cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("this CPU has no AVX512_BF16 / AMX")
    _, run = latent_run
    _gen_bf16 = GenerateConfig(n=3, batch_size=3, shard_size=3, sampler="unipc", steps=3, backend="openvino",
                               precision="bf16")
    from fastsynth.pipeline import generate

    generate(_gen_bf16, tmp_path / "g", model=str(run), progress=False)
    man = json.loads((tmp_path / "g" / "fastsynth.json").read_text())
    assert man["latent"]["decoder"] == {"backend": "openvino", "precision": "bf16"}
    gates = list(Path(__import__("os").environ["FASTSYNTH_CACHE"]).glob("bf16/*-64/gate-*.json"))
    assert gates, "no gate record for the 64x64 latent model"
    fig = json.loads(gates[0].read_text())["figures"]
    assert 0 < fig["sampler"]["mean_mask_iou"] <= 1 and fig["output"]["rel_rms"] > 0


def test_a_random_latent_model_for_speed_measurements(tmp_path):
    """bench --preset latent (and gpu_check.sh's latent steps) use a random-weight latent model on the bundled
    autoencoder; it loads and generates like a trained one."""
    from fastsynth.bench import random_model_dir
    from fastsynth.models import load_model

    d = random_model_dir("latent", 64)
    net, meta = load_model(d)
    assert net.config.autoencoder == "taef2" and net.config.grid == 8 and meta["random_weights"]["preset"] == "latent"
    _gen(d, tmp_path / "g")
    assert _rows(tmp_path / "g").images.shape == (5, 64, 64, 3)


def test_a_latent_model_bundles_in_fp16_with_its_space(latent_run, tmp_path):
    """Weights kept for a warm restart (or shipped): fp16, the latent fields in config.json, no optimizer state."""
    from safetensors.torch import load_file

    from fastsynth.models import load_model
    from fastsynth.models.bundle import bundle

    _, run = latent_run
    d = bundle(str(run), dest=tmp_path / "w")
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "config.json", "fastsynth.json", "model.safetensors",
                                                   "split.json"]
    assert all(v.dtype == torch.float16 for v in load_file(str(d / "model.safetensors")).values())
    net, meta = load_model(d)
    assert net.config.autoencoder == "taef2" and meta["stored_dtype"] == "float16"
    assert "TAEF2 tiny autoencoder (MIT" in (d / "README.md").read_text()


# --- cascade pairs (generate --base): a lower-resolution pixel model draws each pair, the latent model re-renders it

@pytest.mark.parametrize("sampler", ["unipc", "dpmpp", "ddim", "ddpm"])
def test_sample_from_init_runs_the_last_steps_only(sampler):
    """Starting part-way: the last round(steps * strength) timesteps of the full schedule, from init noised to the
    first of them; strength 1 (or no init) is the whole trajectory from noise."""
    from fastsynth.sampling.samplers import make_scheduler, sample, start_steps

    sch = make_scheduler(sampler, 1000, "squaredcos_cap_v2", "v_prediction")
    full = sch.__class__.from_config(sch.config)
    full.set_timesteps(10)
    seen = []

    def fn(x, t, cond):
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    noise, init = torch.randn(2, 4, 8, 8), torch.full((2, 4, 8, 8), 0.5)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    sample(fn, sch, noise, torch.zeros(2, 8, 8, 8), 10, generators=gens, init=init, strength=0.3)
    assert seen == [int(t) for t in full.timesteps[-3:]] and start_steps(10, 0.3) == 3
    seen.clear()
    a = sample(fn, sch, noise, torch.zeros(2, 8, 8, 8), 10, init=init, strength=1.0,
               generators=[torch.Generator().manual_seed(i) for i in range(2)])
    b = sample(fn, sch, noise, torch.zeros(2, 8, 8, 8), 10,
               generators=[torch.Generator().manual_seed(i) for i in range(2)])
    assert len(seen) == 20 and torch.equal(a, b)
    with pytest.raises(FastsynthError, match="strength"):
        start_steps(10, 0.0)
    assert start_steps(10, 0.01) == 1


def test_sample_from_init_with_a_perfect_model_returns_init():
    """An x0-oracle network (v for the true x0) brings any start level back to init: the noising matches the
    scheduler's own marginals."""
    from fastsynth.sampling.samplers import make_scheduler, sample

    sch = make_scheduler("unipc", 1000, "squaredcos_cap_v2", "v_prediction")
    init = torch.rand(3, 4, 8, 8) * 2 - 1
    ac = sch.alphas_cumprod

    def oracle(x, t, cond):
        a = ac[int(t[0])]
        eps = (x - a.sqrt() * init) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * init

    out = sample(oracle, sch, torch.randn(3, 4, 8, 8), torch.zeros(3, 8, 8, 8), 12, init=init, strength=0.5)
    assert torch.allclose(out, init, atol=1e-3)


def test_upsample_pairs_gives_exact_masks_and_label_maps():
    from fastsynth.sampling.cascade import upsample_pairs

    yy, xx = np.mgrid[:16, :16]
    disc = ((yy - 8) ** 2 + (xx - 7) ** 2 <= 20).astype(np.uint8)
    images = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    x, m = upsample_pairs(images, np.stack([disc * 255] * 2), Modality(), 64, 4)
    assert x.shape == (2, 3, 64, 64) and float(x.abs().max()) <= 1.0
    assert m.shape == (2, 64, 64) and set(np.unique(m.numpy())) == {0, 255}
    big = np.kron(disc, np.ones((4, 4), np.uint8)).astype(bool)
    iou = (big & (m[0].numpy() > 0)).sum() / (big | (m[0].numpy() > 0)).sum()
    assert iou > 0.85
    labels = np.where(disc > 0, 1, 0).astype(np.uint8)
    labels[2:5, 2:8] = 2
    _, m3 = upsample_pairs(images[:, :, :, 0], labels[None], Modality(channels=1, class_names=("bg", "a", "b")), 64, 4)
    assert set(np.unique(m3.numpy())) == {0, 1, 2}


def _gen_cascade(model, base, out, **kw):
    from fastsynth.pipeline import generate

    cfg = GenerateConfig(n=5, batch_size=3, shard_size=4, sampler="unipc", steps=4, backend="eager", precision="fp32",
                         base=str(base), **kw)
    return generate(cfg, out, model=str(model), progress=False)


def test_cascade_pairs_keep_the_base_pairs_mask_upsampled(latent_run, tiny_model_dir, tmp_path):
    """Each cascade row is the base model's row (same seed), upsampled, its mask kept exactly; the image changes
    with the strength; the dataset records the base and refuses a resume with another strength."""
    from fastsynth.pipeline import generate
    from fastsynth.sampling.cascade import upsample_pairs

    _, run = latent_run
    _gen_cascade(run, tiny_model_dir, tmp_path / "c", strength=0.5)
    generate(GenerateConfig(n=5, batch_size=3, shard_size=4, backend="eager", precision="fp32"), tmp_path / "b",
             model=str(tiny_model_dir), progress=False)
    c, b = _rows(tmp_path / "c"), _rows(tmp_path / "b")
    assert c.images.shape == (5, 64, 64, 3) and c.masks.shape == (5, 64, 64)
    x_up, m_up = upsample_pairs(b.images, b.masks, Modality(), 64, 4)
    assert np.array_equal(c.masks, m_up.numpy())
    man = json.loads((tmp_path / "c" / "fastsynth.json").read_text())
    assert man["cascade"]["strength"] == 0.5 and man["cascade"]["base_resolution"] == 16
    assert man["base_model"]["path"] == "model" and man["redraw"] is False
    card = (tmp_path / "c" / "README.md").read_text()
    assert "| cascade | pairs drawn by `model`" in card and "strength 0.5" in card
    _gen_cascade(run, tiny_model_dir, tmp_path / "c9", strength=0.9)
    assert not np.array_equal(_rows(tmp_path / "c9").images, c.images)
    with pytest.raises(FastsynthError, match="cascade"):
        _gen_cascade(run, tiny_model_dir, tmp_path / "c", strength=0.9)


def test_cascade_defaults_come_from_the_model_and_none_turns_them_off():
    from fastsynth.config import apply_model_defaults, resolve_cascade, resolve_guidance

    meta = {"generate_defaults": {"pairs": {"sampler": "unipc", "steps": 12, "redraw": False, "base": "bundled",
                                            "strength": 0.4}}}
    cfg = resolve_guidance(resolve_cascade(apply_model_defaults(GenerateConfig(), meta)))
    assert (cfg.base, cfg.strength, cfg.redraw, cfg.guidance) == ("bundled", 0.4, False, 1.0)
    cfg = resolve_cascade(apply_model_defaults(GenerateConfig(base="none"), meta))
    assert cfg.base == "" and cfg.strength is None
    cfg = resolve_guidance(resolve_cascade(GenerateConfig(base="bundled")))
    assert cfg.strength == 0.5 and cfg.redraw is False


def test_cascade_bad_input_one_line_exit_2(latent_run, tiny_model_dir, tmp_path):
    _, run = latent_run
    cases = [(["--model", str(tiny_model_dir), "--base", str(run / "model")], "not below"),
             (["--model", str(run), "--base", str(tiny_model_dir), "--strength", "0"], "--strength 0"),
             (["--model", str(run), "--strength", "0.5"], "--strength is for a cascade"),
             (["--model", str(run), "--base", str(tiny_model_dir), "--redraw"], "--redraw"),
             (["--model", str(run), "--base", str(tiny_model_dir), "--mode", "from-masks", "--masks", str(tmp_path)],
              "--mode from-masks")]
    for args, msg in cases:
        out = tmp_path / "g"
        r = _cli("generate", *args, "--n", "2", "--out", str(out), "--backend", "eager")
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert not out.exists()


def _table(path):
    import pyarrow.parquet as pq

    t = pq.read_table(sorted((Path(path) / "data").glob("*.parquet"))).to_pydict()
    order = np.argsort(t["index"])
    return {k: [v[i] for i in order] for k, v in t.items()}


def test_a_latent_filter_scores_candidates_before_the_decoder_runs(latent_run, tmp_path, monkeypatch):
    """train-filter: a segmenter on the latent grid, trained on the model's own split. In generate it keeps the
    agreeing candidates in order, as the image filter does, but the decoder runs only on the kept ones; at
    threshold 0 the rows are the unfiltered rows, byte for byte, with the latent agreement as their column."""
    from dataclasses import replace

    from fastsynth.cli import main
    from fastsynth.metrics.io import load_synthetic
    from fastsynth.models.latent import LatentSpace

    _, run = latent_run
    seg = tmp_path / "lf"
    assert main(["train-filter", "--model", str(run), "--out", str(seg), "--steps", "20", "--batch-size", "4",
                 "--resolution", "32", "--no-progress"]) == 0
    c = json.loads((seg / "config.json").read_text())
    assert c["input"] == "latent" and c["autoencoder"] == "taef2" and c["resolution"] == 32
    assert "held-out" in json.loads((seg / "fastsynth.json").read_text())["scores"]

    decoded = []
    orig = LatentSpace.decode_images

    def counting(self, z):
        decoded.append(len(z))
        return orig(self, z)

    monkeypatch.setattr(LatentSpace, "decode_images", counting)
    base = GenerateConfig(n=8, steps=3, batch_size=4, shard_size=8, backend="eager")
    generate(base, tmp_path / "all", model=str(run), progress=False)
    generate(replace(base, keep_agreeing=str(seg), min_agreement=0.0), tmp_path / "zero", model=str(run),
             progress=False)
    a, z = _table(tmp_path / "all"), _table(tmp_path / "zero")
    pa, pz = load_synthetic(tmp_path / "all"), load_synthetic(tmp_path / "zero")
    assert z["seed"] == a["seed"] and np.array_equal(pz.images, pa.images) and np.array_equal(pz.masks, pa.masks)
    agree = np.asarray(z["agreement"])
    thr = float(np.sort(agree)[len(agree) // 2])
    assert 0 < (agree >= thr).sum() < len(agree), agree
    decoded.clear()
    s = generate(replace(base, keep_agreeing=str(seg), min_agreement=thr), tmp_path / "keep", model=str(run),
                 progress=False)
    k, pk = _table(tmp_path / "keep"), load_synthetic(tmp_path / "keep")
    assert s["candidates"] > 8 and sum(decoded) == 8  # every candidate scored, only the kept ones decoded
    own = [i for i in range(8) if agree[i] >= thr]
    assert k["seed"][:len(own)] == [a["seed"][i] for i in own]
    # the same rows; decoded in a smaller batch, within one grey level (as in the batch test above)
    assert np.abs(pk.images[:len(own)].astype(int) - pa.images[own]).max() <= 1
    assert np.array_equal(pk.masks[:len(own)], pa.masks[own]) and min(k["agreement"]) >= thr
    m = json.loads((tmp_path / "keep" / "fastsynth.json").read_text())
    assert m["keep_agreeing"]["scored_on"] == "latent"
    assert "from each pair's latent, before decoding" in (tmp_path / "keep" / "README.md").read_text()
    with pytest.raises(FastsynthError, match="--mode pairs"):
        generate(replace(base, mode="from-masks", keep_agreeing=str(seg)), tmp_path / "fm", model=str(run),
                 masks=str(latent_run[0] / "masks"), progress=False)

    # shipped with a model as its default filter (trained on its training split only, so it is accepted)
    import shutil

    from fastsynth.models.bundle import ship_filter

    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    ship_filter(model, str(seg), thr)
    pairs = json.loads((model / "fastsynth.json").read_text())["generate_defaults"]["pairs"]
    assert pairs["keep_agreeing"] == "latent-filter" and pairs["min_agreement"] == thr
    assert "real_train_stems" not in json.loads((model / "latent-filter" / "fastsynth.json").read_text())
    r = subprocess.run([sys.executable, "-m", "fastsynth", "info", "--model", str(model)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and "`latent-filter` at Dice >= " in r.stdout and "scored on the latent grid" in r.stdout
    generate(replace(base, n=2, shard_size=2), tmp_path / "own", model=str(model), progress=False)
    m = json.loads((tmp_path / "own" / "fastsynth.json").read_text())
    assert m["keep_agreeing_run"]["segmenter"] == "the model's own" and m["keep_agreeing"]["scored_on"] == "latent"
    assert m["keep_agreeing"]["min_agreement"] == thr


def test_a_latent_filter_refuses_a_pixel_model_and_train_filter_refuses_one(latent_run, tiny_model_dir, tmp_path):
    from fastsynth.training.latent_filter import train_latent_filter

    _, run = latent_run
    seg = train_latent_filter(run, tmp_path / "lf", steps=2, batch_size=2, resolution=16, progress=False)
    with pytest.raises(FastsynthError, match="pairs are pixels"):
        generate(GenerateConfig(n=2, steps=2, batch_size=2, backend="eager", keep_agreeing=str(seg)),
                 tmp_path / "px", model=str(tiny_model_dir), progress=False)
    assert not (tmp_path / "px" / "data").exists()
    r = subprocess.run([sys.executable, "-m", "fastsynth", "train-filter", "--model", str(tiny_model_dir), "--out",
                        str(tmp_path / "no")], capture_output=True, text=True)
    assert r.returncode == 2 and "a pixel model" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "no").exists()


def test_train_filter_distils_an_image_filter_on_the_models_own_candidates(latent_run, tmp_path, monkeypatch,
                                                                          capsys):
    """--distill N: the latent filter learns the image filter's masks of N decoded candidates, from the latents the
    decoder was given (caught before decoding), rows 0..N-1 of the seed as an unfiltered run draws them."""
    import torch

    from fastsynth.cli import main
    from fastsynth.models.latent import LatentSpace
    from fastsynth.models.segmenter import SegConfig, build_model, save_segmenter
    from fastsynth.runtime.agreement import AgreementScorer
    from fastsynth.pipeline import distill_candidates

    _, run = latent_run
    cfg = SegConfig(arch="unet", encoder="resnet18", encoder_weights=None, encoder_depth=3,
                    decoder_channels=(16, 8, 4), resolution=16)
    torch.manual_seed(0)
    teacher = save_segmenter(build_model(cfg)[0], cfg, tmp_path / "teacher", {"protocol": "real"})
    decoded = []
    orig = LatentSpace.decode_images

    def catching(self, z):
        decoded.append(self.to_autoencoder_scale(z).detach().float().cpu())
        return orig(self, z)

    import shutil

    one_pass = tmp_path / "one-pass"  # without a redraw the latent scored is the latent decoded
    shutil.copytree(run / "model", one_pass)
    meta = json.loads((one_pass / "fastsynth.json").read_text())
    (one_pass / "fastsynth.json").write_text(json.dumps({**meta, "generate_defaults": {"pairs": {"redraw": False}}}))
    monkeypatch.setattr(LatentSpace, "decode_images", catching)
    scorer = AgreementScorer(teacher, "cpu", "eager")
    d = distill_candidates(one_pass, 6, tmp_path / "work", teacher=str(teacher), seed=3, batch_size=4,
                           progress=False, backend="eager")
    z, masks, teach = d["z"], d["masks"], d["teach"]
    assert d["resolution"] == 16 and d["record"]["teacher_sha256"] == scorer.sha256
    assert z.dtype == torch.float16 and z.shape[0] == 6 and teach.shape == (6, 16, 16) and teach.dtype == bool
    assert torch.allclose(z.float(), torch.cat(decoded), atol=1e-2, rtol=1e-3)  # what the decoder got, in row order
    # interrupted (the shard not written, the latents of all batches but the first lost): run again, the same
    shutil.rmtree(tmp_path / "work" / "pairs" / "data")
    for f in sorted((tmp_path / "work" / "latents").glob("*"))[1:]:
        f.unlink()
    decoded.clear()
    d2 = distill_candidates(one_pass, 6, tmp_path / "work", teacher=str(teacher), seed=3, batch_size=4,
                            progress=False, backend="eager")
    z2, masks2, teach2 = d2["z"], d2["masks"], d2["teach"]
    assert torch.equal(z, z2) and np.array_equal(masks, masks2) and np.array_equal(teach, teach2)
    monkeypatch.setattr(LatentSpace, "decode_images", orig)
    generate(GenerateConfig(n=6, seed=3, batch_size=4, keep_agreeing="none", backend="eager"), tmp_path / "same",
             model=str(one_pass), progress=False)
    from fastsynth.metrics.io import load_synthetic

    same = load_synthetic(tmp_path / "same")
    assert np.array_equal(masks, same.masks) and np.array_equal(teach, scorer.predict_masks(same.images))

    out = tmp_path / "lf"
    assert main(["train-filter", "--model", str(run), "--out", str(out), "--distill", "10", "--teacher",
                 str(teacher), "--steps", "3", "--batch-size", "2", "--backend", "eager", "--no-progress"]) == 0
    c, m = json.loads((out / "config.json").read_text()), json.loads((out / "fastsynth.json").read_text())
    assert c["input"] == "latent" and c["resolution"] == 16  # scored where the teacher scores
    assert not (tmp_path / "lf.candidates").exists()  # the candidates' folder goes once the filter is written
    assert m["protocol"] == "distilled" and m["distilled"]["candidates"] == 10
    assert m["distilled"]["teacher"] == "teacher"
    assert m["distilled"]["held_back_candidates"]["n"] == 1 and m["real_train_stems"]
    assert "held-out" in m["scores"]
    from fastsynth.models.bundle import ship_filter

    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    ship_filter(model, str(out), 0.5)  # its real data is the model's training split: accepted
    shipped = json.loads((model / "latent-filter" / "fastsynth.json").read_text())
    assert shipped["protocol"] == "distilled" and shipped["distilled"]["teacher_sha256"] == scorer.sha256
    capsys.readouterr()
    assert main(["info", "--model", str(model)]) == 0
    assert "distilled from its real-data image filter `latent-filter`" in capsys.readouterr().out
    # the model now ships a latent filter: --distill without --teacher has no image filter to learn from
    for args, msg in [(["--model", str(model)], "--teacher"),
                      (["--model", str(run), "--teacher", str(teacher)], "--teacher is the image filter of"),
                      (["--model", str(run)], "ships no filter"),
                      (["--model", str(run), "--teacher", str(model / "latent-filter")], "a latent filter"),
                      (["--model", str(run), "--teacher", str(tmp_path)], "not a segmenter folder")]:
        extra = [] if "--teacher is" in msg else ["--distill", "4"]
        capsys.readouterr()
        assert main(["train-filter", *args, "--out", str(tmp_path / "no"), *extra]) == 2, args
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, (args, err)
        assert not (tmp_path / "no").exists()
