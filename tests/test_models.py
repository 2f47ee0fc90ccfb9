import json

import pytest
import torch

from fastsynth.config import ModelConfig, from_dict, model_config_for
from fastsynth.errors import FastsynthError
from fastsynth.models import Denoiser, load_model, save_model


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    net = Denoiser(model_config_for("tiny", 16)).eval()
    save_model(net, tmp_path / "m", meta={"hello": 1})
    loaded, meta = load_model(tmp_path / "m")
    x, c = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 16, 16)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.equal(net(x, t, c), loaded(x, t, c))
    assert meta["hello"] == 1
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "fastsynth.json"}


def test_fp16_save_is_half_the_size_and_close(tmp_path):
    torch.manual_seed(1)
    net = Denoiser(model_config_for("tiny", 16)).eval()
    save_model(net, tmp_path / "a")
    save_model(net, tmp_path / "b", dtype=torch.float16)
    sa = (tmp_path / "a" / "model.safetensors").stat().st_size
    sb = (tmp_path / "b" / "model.safetensors").stat().st_size
    assert sb < 0.6 * sa
    lb, _ = load_model(tmp_path / "b")
    x, c, t = torch.randn(1, 4, 16, 16), torch.randn(1, 8, 16, 16), torch.tensor([500])
    with torch.no_grad():
        assert (net(x, t, c) - lb(x, t, c)).abs().max() < 1e-2


def test_patchified_model_shapes():
    net = Denoiser(model_config_for("small", 32))
    out = net(torch.randn(1, 4, 32, 32), torch.tensor([3]), torch.zeros(1, 8, 32, 32))
    assert out.shape == (1, 4, 32, 32)


def test_config_rejects_unknown_keys_and_bad_resolution():
    with pytest.raises(FastsynthError, match="unknown key"):
        from_dict(ModelConfig, {"resolution": 64, "chanels": 3})
    with pytest.raises(FastsynthError, match="multiple of 16"):
        model_config_for("small", 40)
    with pytest.raises(FastsynthError, match="unknown preset"):
        model_config_for("huge", 64)


def test_load_errors(tmp_path):
    with pytest.raises(FastsynthError, match="no such folder"):
        load_model(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    with pytest.raises(FastsynthError, match="expected config.json and model.safetensors"):
        load_model(tmp_path / "m")
    net = Denoiser(model_config_for("tiny", 16))
    save_model(net, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(FastsynthError, match="unreadable safetensors"):
        load_model(tmp_path / "m")


@pytest.mark.parametrize("name", ["bundled", "bundled-fast"])
def test_shipped_models_load_and_describe_themselves(name):
    """Both shipped models load from the package; the fast one is the distilled 4-step student of the other."""
    from fastsynth.models import resolve_model_dir
    from fastsynth.sampling import resolve_sampler
    from fastsynth.utils import file_sha256

    d = resolve_model_dir(name)
    net, meta = load_model(name)
    assert net.config.resolution == 64 and (d / "README.md").exists() and (d / "split.json").exists()
    sampler, steps, grid = resolve_sampler(None, None, meta)
    if name == "bundled":
        assert (sampler, steps, grid) == ("unipc", 6, None)  # the sampler default of the modes it has no own for
        from fastsynth.config import GenerateConfig, apply_model_defaults, resolve_guidance

        # its measured default for pairs: 4 evaluations (UniPC x4, the mask fixed at sigma 1.5, no guidance)
        g = resolve_guidance(apply_model_defaults(GenerateConfig(), meta))
        assert (g.sampler, g.steps, g.redraw, g.condition_at, g.guidance) == ("unipc", 4, False, 1.5, 1.0)
        fm = resolve_guidance(apply_model_defaults(GenerateConfig(mode="from-masks"), meta))
        assert (fm.steps, fm.condition_at) == (None, 0.0)
    else:
        assert (sampler, steps, grid) == ("distilled", 4, [999, 749, 499, 249])
        # the student of the previous bundled model (sha256 below); the current bundled model (a warm start from
        # that one) has not been distilled yet, and the student's card says so
        previous = "1b908a561fab5f63874d5aebf5b951bfe1e7f27d2d9a1880ba9da94dedd63b2b"
        teacher = resolve_model_dir("bundled") / "model.safetensors"
        assert meta["distillation"]["teacher_sha256"] in (file_sha256(teacher), previous)
        if meta["distillation"]["teacher_sha256"] != file_sha256(teacher):
            assert "previous bundled model" in (d / "README.md").read_text()


def test_bundled_ultrasound_model_is_grey_binary_split_by_examination_and_generates(tmp_path):
    """The second shipped model: HC18 fetal-head ultrasound, 8-bit grey + binary mask, its split keeps each
    examination (NNN_HC, NNN_2HC, NNN_3HC) on one side, its card names its data and licence, and it generates
    greyscale pairs."""
    import datasets
    import numpy as np

    from fastsynth.config import GenerateConfig
    from fastsynth.data.modality import modality_from_config
    from fastsynth.models import resolve_model_dir
    from fastsynth.pipeline import generate

    d = resolve_model_dir("bundled-ultrasound")
    net, meta = load_model("bundled-ultrasound")
    m = modality_from_config(net.config)
    assert (m.channels, m.bits, m.binary, m.data_channels) == (1, 8, True, 2)
    split = json.loads((d / "split.json").read_text())
    exam = lambda s: s.split("_")[0]  # noqa: E731
    assert split["train"] and split["test"]
    assert not {exam(s) for s in split["train"]} & {exam(s) for s in split["test"]}
    card = (d / "README.md").read_text()
    assert "HC18" in card and "cc-by-4.0" in card and "../" not in card
    assert meta["training_data"]["license"] == "cc-by-4.0"
    generate(GenerateConfig(n=2, batch_size=2, backend="eager"), tmp_path / "us", model="bundled-ultrasound",
             progress=False)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "us" / "data" / "*.parquet"), split="train")
    assert ds[0]["image"].mode == "L" and set(np.unique(np.asarray(ds[0]["mask"]))) <= {0, 255}
    assert json.loads((tmp_path / "us" / "fastsynth.json").read_text())["model"]["path"] == "bundled-ultrasound"


def test_bundled_hippocampus_model_is_16bit_label_maps_split_by_volume_and_generates(tmp_path):
    """The third shipped model: MSD hippocampus MRI, 16-bit grey + 3-class label maps, trained on coronal slices
    with every volume's slices on one side of the split; its card carries the CC BY-SA licence and its measured
    defaults (one UniPC pass); it generates 16-bit images and label maps with values 0..2."""
    import datasets
    import numpy as np

    from fastsynth.config import GenerateConfig
    from fastsynth.data.modality import modality_from_config
    from fastsynth.models import resolve_model_dir
    from fastsynth.pipeline import generate

    d = resolve_model_dir("bundled-hippocampus")
    net, meta = load_model("bundled-hippocampus")
    m = modality_from_config(net.config)
    assert (m.channels, m.bits, m.binary, m.num_classes) == (1, 16, False, 3)
    split = json.loads((d / "split.json").read_text())
    volume = {s: g for g, stems in split["groups"].items() for s in stems}
    assert split["train"] and split["test"]
    assert not {volume[s] for s in split["train"]} & {volume[s] for s in split["test"]}
    card = (d / "README.md").read_text()
    assert "Decathlon" in card and "license: cc-by-sa-4.0" in card and "Share-alike" in card and "../" not in card
    assert meta["generate_defaults"]["pairs"]["redraw"] is False
    generate(GenerateConfig(n=2, batch_size=2, backend="eager", steps=2), tmp_path / "h", model="bundled-hippocampus",
             progress=False)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "h" / "data" / "*.parquet"), split="train")
    assert ds[0]["image"].mode == "I;16" and set(np.unique(np.asarray(ds[0]["mask"]))) <= {0, 1, 2}


def test_bundle_records_measured_generate_defaults(tiny_model_dir, tmp_path):
    """bundle --generate-defaults writes the model's own defaults, which generate then applies; unknown settings or
    modes are refused."""
    from fastsynth.config import GenerateConfig, apply_model_defaults
    from fastsynth.models.bundle import bundle
    from fastsynth.models.denoiser import read_model_meta

    d = bundle(str(tiny_model_dir), dest=tmp_path / "m",
               generate_defaults={"pairs": {"sampler": "unipc", "steps": 12, "redraw": False}})
    cfg = apply_model_defaults(GenerateConfig(), read_model_meta(d))
    assert (cfg.sampler, cfg.steps, cfg.redraw) == ("unipc", 12, False)
    with pytest.raises(SystemExit, match="known"):
        bundle(str(tiny_model_dir), dest=tmp_path / "m2", generate_defaults={"pairs": {"stepz": 3}})
    assert not (tmp_path / "m2").exists()


def test_bundled_256_ships_its_filter_segmenter_and_keeps_agreeing_pairs(tmp_path):
    """The 256² latent polyp model: its defaults keep only pairs whose mask agrees with the real-data segmenter
    shipped in its folder (fp16, trained on none of its held-out pairs), at the measured threshold."""
    import json

    from safetensors.torch import load_file

    from fastsynth.config import GenerateConfig
    from fastsynth.models import resolve_model_dir
    from fastsynth.models.segmenter import load_segmenter
    from fastsynth.pipeline import generate

    d = resolve_model_dir("bundled-256")
    meta = json.loads((d / "fastsynth.json").read_text())
    assert meta["resolution"] == 256 and meta["latent"]["autoencoder"] == "taef2"
    pairs = meta["generate_defaults"]["pairs"]
    assert pairs["keep_agreeing"] == "filter-segmenter" and 0 < pairs["min_agreement"] < 1
    seg = d / "filter-segmenter"
    assert {str(v.dtype) for v in load_file(str(seg / "model.safetensors")).values() if v.is_floating_point()} \
        == {"torch.float16"}
    _, cfg, smeta = load_segmenter(seg)
    assert smeta["protocol"] == "real" and "none of its held-out" in smeta["real_train"] and cfg.resolution == 128
    # the shipped segmenter scores the pairs (threshold 0 here: two candidates, two rows, whatever 2 steps make)
    s = generate(GenerateConfig(n=2, batch_size=2, backend="eager", steps=2, min_agreement=0.0), tmp_path / "g",
                 model="bundled-256", progress=False)
    m = json.loads((tmp_path / "g" / "fastsynth.json").read_text())
    assert m["keep_agreeing"]["scored_at"] == 128 and m["keep_agreeing_run"]["segmenter"] == "the model's own"
    assert s["candidates"] == 2 and m["resolution"] == 256
