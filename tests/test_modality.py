"""Issue 11: greyscale and 16-bit images, K-class label maps, grouped splits (tiny generated data; the real
hc18 / Sunnybrook folders only where present)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_modality_folder, make_pair_folder
from fastsynth.config import GenerateConfig, TrainConfig
from fastsynth.data import load_pairs, make_split, scan_pairs
from fastsynth.data.codec import (images_to_tensor, labels_to_channels, pairs_to_x0, raw_to_rgb8, tensor_to_raw)
from fastsynth.data.modality import Modality, detect_modality, intensity_window, modality_from_config, parse_classes
from fastsynth.errors import DataError, FastsynthError
from fastsynth.sampling.masks import decode_labels, decode_mask

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None


def _train(data: Path, out: Path, steps: int = 15, **kw) -> Path:
    from fastsynth.training import train

    cfg = TrainConfig(data=str(data), out=str(out), preset="tiny", resolution=16, steps=steps, batch_size=8,
                      lr=1e-3, warmup_steps=5, checkpoint_every=1000, test_fraction=0.0, **kw)
    train(cfg, progress=False)
    return out / "model"


@pytest.fixture(scope="module")
def grey16_3class(tmp_path_factory):
    root = tmp_path_factory.mktemp("g16")
    data = make_modality_folder(root / "data", n=8, kind="I;16", classes=3)
    return data, _train(data, root / "run")


@pytest.fixture(scope="module")
def grey8_binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("g8")
    data = make_modality_folder(root / "data", n=8, kind="L", classes=2)
    return data, _train(data, root / "run")


def _gen(model, out, mode="pairs", n=5, **kw):
    from fastsynth.pipeline import generate

    cfg = GenerateConfig(n=n, mode=mode, steps=kw.pop("steps", 3), batch_size=2, shard_size=3,
                         backend=kw.pop("backend", "eager"))
    generate(cfg, out, model=str(model), progress=False, **kw)
    import datasets

    return datasets.load_dataset(str(out), split="train")


# --- codec ----------------------------------------------------------------------------------------------------
def test_default_modality_is_the_original_model():
    from fastsynth.config import ModelConfig
    from fastsynth.models import load_model

    assert modality_from_config(ModelConfig()).is_default
    for name in ("bundled", "bundled-fast"):  # config.json without the new fields: RGB, 8-bit, binary
        net, _ = load_model(name)
        m = modality_from_config(net.config)
        assert m.is_default and m.data_channels == 4 and net.config.in_channels == 12


def test_16bit_round_trip_in_the_window():
    m = Modality(channels=1, bits=16, window=(100.0, 3100.0))
    raw = np.array([[[[100, 101, 1600, 3099, 3100]]]], np.uint16)
    x = images_to_tensor(raw, m)
    assert x.min() == -1 and x.max() == 1
    back = tensor_to_raw(x, m)
    assert back.dtype == np.uint16 and np.array_equal(back[0], raw[0, 0])
    out_of_window = tensor_to_raw(images_to_tensor(np.array([[[[0, 65535]]]], np.uint16), m), m)
    assert out_of_window.tolist() == [[[100, 3100]]]  # clipped to the window, never wrapped
    assert raw_to_rgb8(raw[:, 0], m)[0, 0, [0, 4]].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_grey8_round_trip():
    m = Modality(channels=1)
    raw = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    back = tensor_to_raw(images_to_tensor(raw, m), m)
    assert back.dtype == np.uint8 and np.array_equal(back[0], raw[0, 0])


def test_intensity_window_percentiles():
    v = np.arange(1000, dtype=np.uint16)
    assert intensity_window(v) == (4.0, 995.0)


def test_label_channels_one_hot_and_binary_unchanged():
    m3 = Modality(channels=1, class_names=("bg", "a", "b"))
    lab = np.array([[[0, 1, 2]]], np.uint8)
    ch = labels_to_channels(lab, m3)
    assert ch.shape == (1, 2, 1, 3) and ch[0, :, 0].tolist() == [[-1, 1, -1], [-1, -1, 1]]
    assert np.array_equal(decode_labels(ch).numpy(), lab)
    mb = Modality()
    chb = labels_to_channels(np.array([[[0, 255]]], np.uint8), mb)
    assert chb.shape == (1, 1, 1, 2) and chb.flatten().tolist() == [-1, 1]
    x0 = pairs_to_x0(np.array([[[[0, 255]], [[0, 255]], [[0, 255]], [[0, 255]]]], np.uint8), mb)
    assert x0.flatten().tolist() == [-1, 1, -1, 1, -1, 1, -1, 1]


def test_decode_labels_argmax_and_per_class_cleanup():
    c = torch.full((1, 2, 12, 12), -1.0)
    c[0, 0, 2:9, 2:9] = 1.0  # class 1: a 7x7 square
    c[0, 1, 4:7, 4:7] = 2.0  # class 2 inside it, stronger: wins the argmax
    c[0, 1, 0, 11] = 1.0  # a one-pixel speck of class 2 in the background corner
    c[0, 0, 3, 8] = 0.5
    c[0, 1, 3, 8] = 0.7  # a one-pixel speck of class 2 on the edge of class 1
    raw = decode_labels(c, 0.0, opening=0).numpy()[0]
    assert raw[0, 11] == 2 and raw[5, 5] == 2 and raw[2, 2] == 1 and raw[3, 8] == 2
    clean = decode_labels(c, 0.0, opening=3).numpy()[0]  # area opening: regions < 7 px removed
    assert clean[0, 11] == 0  # speck in the background -> background
    assert clean[3, 8] == 1  # speck inside class 1 -> its nearest kept class
    assert clean[5, 5] == 2 and clean[2, 2] == 1  # the 3x3 (9 px) core and the ring survive
    assert set(np.unique(clean)) <= {0, 1, 2}
    one = torch.randn(3, 1, 16, 16)
    assert torch.equal(decode_labels(one, 0.0, 4), decode_mask(one, 0.0, 4))  # binary: exactly as before


# --- data checks ------------------------------------------------------------------------------------------------
def test_detects_kinds(tmp_path):
    m, w = detect_modality(scan_pairs(make_modality_folder(tmp_path / "a", kind="I;16", classes=3)))
    assert (m.channels, m.bits, m.num_classes) == (1, 16, 3) and not w
    m, _ = detect_modality(scan_pairs(make_modality_folder(tmp_path / "b", kind="L", classes=2)))
    assert (m.channels, m.bits, m.binary) == (1, 8, True)
    m, _ = detect_modality(scan_pairs(make_pair_folder(tmp_path / "c")))
    assert m.is_default


def test_mixed_depths_name_a_file_of_each(tmp_path):
    d = make_modality_folder(tmp_path / "d", kind="L")
    Image.fromarray(np.zeros((40, 48), np.uint16)).save(d / "images" / "p0-000.png")
    with pytest.raises(DataError, match=r"p0-000\.png is 16-bit grey \(I;16\); .*p0-003\.png is 8-bit grey"):
        detect_modality(scan_pairs(d))


def test_label_value_at_or_above_k(tmp_path):
    d = make_modality_folder(tmp_path / "d", kind="L", classes=3)
    with pytest.raises(DataError, match=r"label value 2 >= 2"):
        detect_modality(scan_pairs(d), class_names=parse_classes("bg,heart"))
    lab = np.zeros((40, 48), np.uint8)
    lab[5:9, 5:9] = 3
    Image.fromarray(lab).save(d / "masks" / "p2-002.png")
    with pytest.raises(DataError, match=r"p2-002\.png: label value 3 >= 3"):
        detect_modality(scan_pairs(d), class_names=parse_classes("background,blood-pool,myocardium"))
    with pytest.raises(DataError, match=r"p2-002\.png: label value 3 >= 3"):
        load_pairs(scan_pairs(d), 16, modality=Modality(channels=1, class_names=("a", "b", "c")))


def test_rgb_coloured_mask_is_refused(tmp_path):
    d = make_modality_folder(tmp_path / "d", kind="RGB")
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[5:15, 5:15] = (255, 0, 0)
    rgb[20:30, 20:30] = (0, 255, 0)
    Image.fromarray(rgb).save(d / "masks" / "p0-000.png")
    with pytest.raises(DataError, match=r"p0-000\.png: RGB-coloured mask"):
        detect_modality(scan_pairs(d))


def test_missing_class_warns(tmp_path):
    d = make_modality_folder(tmp_path / "d", kind="L", classes=3)
    m, w = detect_modality(scan_pairs(d), class_names=("background", "pool", "wall", "scar"))
    assert m.num_classes == 4 and len(w) == 1 and "3 (scar) never occur" in w[0]


def test_bad_class_names():
    with pytest.raises(FastsynthError, match="distinct"):
        parse_classes("bg,a,a")
    with pytest.raises(FastsynthError, match="at least two"):
        parse_classes("bg")


def test_grouped_split():
    stems = [f"{e:03d}_HC" for e in range(40)] + [f"{e:03d}_2HC" for e in range(0, 40, 3)] + ["005_3HC"]
    sp = make_split(stems, 0.2, seed=1, group_by="auto")
    assert sp["group_by"].startswith("auto") and len(sp["test"]) >= round(0.2 * len(stems))
    test_groups = {s[:3] for s in sp["test"]}
    assert not any(s[:3] in test_groups for s in sp["train"])
    assert sorted(sp["train"] + sp["test"]) == sorted(stems)
    assert make_split(list(reversed(stems)), 0.2, seed=1, group_by="auto") == sp
    rx = make_split(stems, 0.2, seed=1, group_by=r"^(\d+)_")
    assert rx["test"] == sp["test"] and rx["group_by"] == r"^(\d+)_"
    plain = [f"s{i}" for i in range(20)]
    assert make_split(plain, 0.2, 3, group_by="auto") == make_split(plain, 0.2, 3)  # nothing to group: as before
    with pytest.raises(FastsynthError, match="does not match the stem"):
        make_split(plain, 0.2, group_by=r"^(\d+)_")


# --- train -> generate -> load_dataset -------------------------------------------------------------------------
def test_grey16_three_classes_all_modes(grey16_3class, tmp_path):
    data, model = grey16_3class
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["image_channels"] == 1 and cfg["image_bits"] == 16 and cfg["data_channels"] == 3
    lo, hi = cfg["intensity_window"]
    assert 600 <= lo < hi <= 2300
    assert json.loads((model / "fastsynth.json").read_text())["data"]["class_names"] == ["background", "class1",
                                                                                       "class2"]
    src = scan_pairs(data)
    m = modality_from_config(__import__("fastsynth.models", fromlist=["load_model"]).load_model(model)[0].config)
    stems, real = load_pairs(src, 16, modality=m)
    ds = _gen(model, tmp_path / "pairs")
    for r in ds:
        a, b = np.asarray(r["image"]), np.asarray(r["mask"])
        assert r["image"].mode == "I;16" and a.dtype == np.uint16 and lo <= a.min() and a.max() <= hi
        assert r["mask"].mode == "L" and set(np.unique(b)) <= {0, 1, 2}
    ds = _gen(model, tmp_path / "fm", "from-masks", masks=str(data / "masks"))
    for i, r in enumerate(ds):
        assert np.array_equal(np.asarray(r["mask"]), real[i % len(real), 1])  # the given label map, exactly
    ds = _gen(model, tmp_path / "ip", "inpaint", images=str(data))
    for i, r in enumerate(ds):
        src_img, src_lab = real[i % len(real), 0], real[i % len(real), 1]
        a, b = np.asarray(r["image"]), np.asarray(r["mask"])
        assert a.dtype == np.uint16 and r["source"] == stems[i % len(stems)]
        from fastsynth.conditioning import inpaint_region

        region = inpaint_region(labels_to_channels(src_lab[None], m), 1)[0, 0].numpy() > 0
        assert np.array_equal(a[~region], src_img[~region])  # outside kept exactly, even beyond the window
        assert np.array_equal(b[~region], src_lab[~region])
    again = _gen(model, tmp_path / "ip2", "inpaint", images=str(data))
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(ds, again))
    card = (tmp_path / "ip" / "README.md").read_text()
    assert "| 2 | class2 |" in card and "Kvasir" not in card


def test_grey8_binary_pairs_and_resume(grey8_binary, tmp_path):
    _, model = grey8_binary
    ds = _gen(model, tmp_path / "g", n=4)
    r = ds[0]
    assert r["image"].mode == "L" and r["mask"].mode == "L"
    assert set(np.unique(np.asarray(r["mask"]))) <= {0, 255}
    # resumable and deterministic: a second run on a fresh folder gives identical bytes
    ds2 = _gen(model, tmp_path / "g2", n=4)
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(ds, ds2))


def test_every_sampler_with_label_maps(grey16_3class, tmp_path):
    from fastsynth.pipeline import generate

    from fastsynth.metrics.io import load_synthetic

    _, model = grey16_3class
    for sampler in ("dpmpp", "unipc", "ddim", "ddpm"):
        cfg = GenerateConfig(n=2, sampler=sampler, steps=2, batch_size=2, backend="eager")
        summary = generate(cfg, tmp_path / sampler, model=str(model), progress=False)
        s = load_synthetic(tmp_path / sampler)
        manifest = json.loads((tmp_path / sampler / "fastsynth.json").read_text())
        assert summary["complete"] and manifest["sampler"] == sampler and manifest["steps"] == 2
        assert s.modality.bits == 16 and s.modality.num_classes == 3  # read back as the 8-bit view of 16-bit grey
        assert s.images.shape[:3] == (2, 16, 16) and s.masks.shape == (2, 16, 16)
        assert set(np.unique(s.masks)) <= {0, 1, 2}  # a 3-class label map, never a binary {0, 255} mask


@pytest.mark.onnx
@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime/onnxscript not installed")
def test_onnx_export_and_generate_with_label_maps(grey16_3class, tmp_path):
    from fastsynth.export import export_artifact

    _, model = grey16_3class
    rep = export_artifact(str(model), "onnx", tmp_path / "exp", device="cpu", batch_size=2)
    assert rep["parity"]["ok"] and rep["inputs"]["x_t"][1] == 3 and rep["inputs"]["cond"][1] == 6
    a = _gen(model, tmp_path / "e", n=3)
    b = _gen(model, tmp_path / "o", n=3, backend="onnx")
    for x, y in zip(a, b):
        assert np.abs(np.asarray(x["image"]).astype(int) - np.asarray(y["image"]).astype(int)).max() <= 64


def test_distill_a_label_map_model(grey16_3class, tmp_path):
    from fastsynth.config import DistillConfig
    from fastsynth.training.distill import distill

    _, model = grey16_3class
    cfg = DistillConfig(teacher=str(model), out=str(tmp_path / "pd"), teacher_steps=4, student_steps=2,
                        steps_per_round=2, batch_size=4, checkpoint_every=100)
    distill(cfg, progress=False, device="cpu")
    ds = _gen(tmp_path / "pd", tmp_path / "s", n=2, steps=None)  # the distilled sampler, 2 steps
    assert ds[0]["image"].mode == "I;16"


# --- evaluation per class ----------------------------------------------------------------------------------------
def test_per_class_scores_by_hand():
    from fastsynth.metrics.downstream import score_label_maps

    target = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros((2, 4, 4), np.uint8)
    target[0, 0, :2] = 1  # image 0: class 1 = 2 px, class 2 = 4 px
    target[0, 1] = 2
    pred[0, 0, :1] = 1  # tp 1, fn 1 -> Dice 2/3, IoU 1/2
    pred[0, 1, :2] = 2  # tp 2, fn 2 -> Dice 2/3, IoU 1/2
    pred[0, 2, 0] = 2  # fp 1 -> class 2: tp 2, fp 1, fn 2 -> Dice 4/7, IoU 2/5
    # image 1: class 1 absent from both -> 1; class 2 predicted 1 px where absent -> 0
    pred[1, 3, 3] = 2
    s = score_label_maps(pred, target, ("bg", "pool", "wall"))
    assert s["per_class"]["pool"]["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["per_class"]["pool"]["iou"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["per_class"]["wall"]["dice"] == pytest.approx((4 / 7 + 0) / 2)
    assert s["per_class"]["wall"]["iou"] == pytest.approx((2 / 5 + 0) / 2)
    assert s["dice"] == pytest.approx(((2 / 3 + 4 / 7) / 2 + (1 + 0) / 2) / 2)


def test_label_statistics_per_class():
    from fastsynth.metrics.masks import label_map_report

    lab = np.zeros((2, 10, 10), np.uint8)
    lab[:, :5, :2] = 1  # class 1: 10 % of each image, one region
    lab[0, 9, 9] = 2  # class 2: 1 px in image 0, 2 regions in image 1
    lab[1, 0, 9] = lab[1, 9, 9] = 2
    rep = label_map_report(lab, lab, ("bg", "pool", "wall"))
    assert rep["per_class"]["pool"]["synthetic"]["area_fraction_mean"] == pytest.approx(0.10)
    assert rep["per_class"]["wall"]["synthetic"]["components_mean"] == pytest.approx(1.5)
    assert rep["synthetic"]["area_fraction_mean"] == pytest.approx((0.11 + 0.12) / 2)
    assert rep["per_class"]["wall"]["distance"]["area_fraction_wasserstein"] == 0.0


def test_evaluate_label_maps_end_to_end(grey16_3class, tmp_path):
    pytest.importorskip("segmentation_models_pytorch")
    from fastsynth.metrics.suite import evaluate, text_table

    data, model = grey16_3class
    _gen(model, tmp_path / "s", n=6)
    res = evaluate(tmp_path / "s", data, metrics="masks,msssim,memorization,hf", device="cpu",
                   downstream={"protocols": ("real", "synthetic"), "steps": 2, "batch_size": 4, "seeds": 2,
                               "encoder_weights": None})
    assert set(res["masks"]["per_class"]) == {"class1", "class2"}
    run = res["downstream"]["runs"]["real"]["test"]
    t = next(iter(run))
    assert set(run[t]["per_class"]) == {"class1", "class2"}
    assert set(res["agreement"]["dice_per_class"]) == {"class1", "class2"}
    assert res["data"]["image_mode"] == "I;16"
    assert "class2" in text_table(res)


# --- the real folders, where present -------------------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "sunnybrook-lv").is_dir(), reason="shared Sunnybrook data not present")
def test_sunnybrook_is_16bit_three_classes_split_by_patient():
    src = scan_pairs(SHARED / "sunnybrook-lv")
    m, w = detect_modality(src)
    assert (m.channels, m.bits, m.num_classes) == (1, 16, 3) and not w
    sp = make_split(src.stems, 0.1, 0, group_by="auto")
    test_patients = {s.split("-")[0] for s in sp["test"]}
    assert test_patients and not any(s.split("-")[0] in test_patients for s in sp["train"])


@pytest.mark.skipif(not (SHARED / "hc18-ultrasound").is_dir(), reason="shared HC18 data not present")
def test_hc18_split_by_examination():
    src = scan_pairs(SHARED / "hc18-ultrasound")
    sp = make_split(src.stems, 0.1, 0, group_by="auto")
    test_exams = {s.split("_")[0] for s in sp["test"]}
    assert not any(s.split("_")[0] in test_exams for s in sp["train"])
    m, _ = detect_modality(src, stems=src.stems[:20])
    assert (m.channels, m.bits, m.binary) == (1, 8, True)


def test_label_maps_are_decided_per_dataset_not_per_file(tmp_path):
    """A slice of a 3-class label map holding only background and class 1 (or only background) is a normal slice of
    that label map, not a binary mask (issue 22, point 3); 0/1 files alone are binary masks."""
    from PIL import Image

    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.data.modality import detect_modality

    from conftest import make_modality_folder

    root = make_modality_folder(tmp_path / "lm", n=6, classes=3)
    masks = sorted((root / "masks").glob("*.png"))
    only_one = np.array(Image.open(masks[0]))
    only_one[only_one == 2] = 0  # an apical slice: blood pool, no myocardium
    Image.fromarray(only_one.astype(np.uint8)).save(masks[0])
    Image.fromarray(np.zeros_like(only_one, np.uint8)).save(masks[1])  # only background
    src = scan_pairs(root)
    m, _ = detect_modality(src)
    assert m.num_classes == 3 and m.names == ("background", "class1", "class2")
    _, arr = load_pairs(src, 32, modality=m)
    assert set(np.unique(arr[:, -1]).tolist()) == {0, 1, 2}
    stems = src.stems
    i0 = stems.index(masks[0].stem)
    assert set(np.unique(arr[i0, -1]).tolist()) <= {0, 1}
    # the same slices under --classes: still one label map
    m2, _ = detect_modality(scan_pairs(root), class_names=("bg", "pool", "wall"))
    assert m2.num_classes == 3
    # a folder of 0/1 masks only: binary, read as {0, 255}
    b = make_modality_folder(tmp_path / "bin", n=4, classes=2, kind="RGB")
    for f in (b / "masks").glob("*.png"):
        Image.fromarray((np.array(Image.open(f)) > 0).astype(np.uint8)).save(f)
    mb, _ = detect_modality(scan_pairs(b))
    assert mb.binary
    _, arrb = load_pairs(scan_pairs(b), 32, modality=mb)
    assert set(np.unique(arrb[:, -1]).tolist()) == {0, 255}
    # ... unless --classes names more than two classes
    mc, _ = detect_modality(scan_pairs(b), class_names=("bg", "a", "b"))
    assert mc.num_classes == 3
