import json

import numpy as np
import pytest
from PIL import Image

from fastsynth.data import load_pairs, make_split, scan_pairs
from fastsynth.data.codec import channel_to_mask, image_to_tensor, mask_to_channel, tensor_to_image
from fastsynth.errors import DataError
from conftest import make_pair_folder


def test_reads_kvasir_layout(pair_folder):
    src = scan_pairs(pair_folder)
    assert src.stems == [f"case{i:03d}" for i in range(6)]
    stems, arr = load_pairs(src, 16)
    assert arr.shape == (6, 4, 16, 16) and arr.dtype == np.uint8
    assert set(np.unique(arr[:, 3])) <= {0, 255}
    assert arr[:, 3].max() == 255  # the discs survive the resize


def test_mixed_extensions_and_jpeg_masks(tmp_path):
    root = make_pair_folder(tmp_path / "d", n=3, ext=".jpg")
    m = np.array(Image.open(root / "masks" / "case000.png"))
    (root / "masks" / "case000.png").unlink()
    Image.fromarray(m).save(root / "masks" / "case000.jpg", quality=75)  # JPEG noise, like Kvasir-SEG
    stems, arr = load_pairs(scan_pairs(root), 16)
    assert len(stems) == 3 and set(np.unique(arr[:, 3])) <= {0, 255}


def test_zero_one_and_rgb_masks(tmp_path):
    root = make_pair_folder(tmp_path / "d", n=2)
    m = np.array(Image.open(root / "masks" / "case000.png"))
    Image.fromarray((m // 255).astype(np.uint8)).save(root / "masks" / "case000.png")
    Image.fromarray(np.stack([m] * 3, -1)).save(root / "masks" / "case001.png")
    _, arr = load_pairs(scan_pairs(root), 16)
    assert arr[0, 3].max() == 255 and arr[1, 3].max() == 255


def _expect(root, match, size=16):
    with pytest.raises(DataError, match=match):
        load_pairs(scan_pairs(root), size)


def test_missing_mask(pair_folder):
    (pair_folder / "masks" / "case002.png").unlink()
    _expect(pair_folder, r"case002\.png: no mask with the same stem")


def test_missing_image(pair_folder):
    (pair_folder / "images" / "case004.png").unlink()
    _expect(pair_folder, r"case004\.png: no image with the same stem")


def test_size_mismatch(pair_folder):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pair_folder / "masks" / "case001.png")
    _expect(pair_folder, r"case001.*image is 48x40 but its mask is 10x10")


def test_truncated_file(pair_folder):
    p = pair_folder / "images" / "case003.png"
    p.write_bytes(p.read_bytes()[:200])
    _expect(pair_folder, r"case003\.png: unreadable or truncated image")


def test_empty_folder(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    _expect(tmp_path / "e", "no image/mask pairs found")


def test_not_a_pair_folder(tmp_path):
    (tmp_path / "x").mkdir()
    _expect(tmp_path / "x", "expected images/ and masks/")
    _expect(tmp_path / "nope", "no such folder")


def test_non_binary_mask(pair_folder):
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint8) * 5, (40, 1))).save(pair_folder / "masks" / "case000.png")
    _expect(pair_folder, r"case000\.png: not a binary mask")


def test_16bit_image(pair_folder):
    Image.fromarray(np.zeros((40, 48), np.uint16)).save(pair_folder / "images" / "case000.png")
    _expect(pair_folder, r"case000\.png: 16-bit grey \(I;16\) image, but this dataset / model is 8-bit RGB")


def test_rgba_image(pair_folder):
    Image.new("RGBA", (48, 40)).save(pair_folder / "images" / "case000.png")
    _expect(pair_folder, r"case000\.png: image has an alpha channel")


def test_palette_image(pair_folder):
    Image.new("P", (48, 40)).save(pair_folder / "images" / "case000.png")
    _expect(pair_folder, r"case000\.png: palette image")


def test_non_image_file(pair_folder):
    (pair_folder / "images" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt: not an image file"):
        scan_pairs(pair_folder)


def test_skip_bad_lists_what_was_skipped(pair_folder):
    (pair_folder / "masks" / "case002.png").unlink()
    p = pair_folder / "images" / "case003.png"
    p.write_bytes(p.read_bytes()[:200])
    (pair_folder / "images" / "notes.txt").write_text("hello")
    src = scan_pairs(pair_folder, skip_bad=True)
    stems, arr = load_pairs(src, 16, skip_bad=True)
    assert stems == ["case000", "case001", "case004", "case005"]
    reasons = " ".join(r for _, r in src.skipped)
    assert "no mask" in reasons and "truncated" in reasons and "not an image" in reasons


def test_hf_dataset_on_disk(tmp_path, pair_folder):
    import datasets

    imgs = sorted((pair_folder / "images").iterdir())
    masks = sorted((pair_folder / "masks").iterdir())
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in imgs], "mask": [str(p) for p in masks]})
    ds = ds.cast_column("image", datasets.Image()).cast_column("mask", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    stems, arr = load_pairs(scan_pairs(tmp_path / "hf"), 16)
    _, ref = load_pairs(scan_pairs(pair_folder), 16)
    assert np.array_equal(arr, ref)


def test_hf_dataset_missing_column(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"image": ["a"], "label": [1]}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(DataError, match=r"no \['mask'\] column"):
        scan_pairs(tmp_path / "hf")


def test_codec_round_trip():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_image(image_to_tensor(img)), img)
    m = np.array([[0, 255], [128, 127]], np.uint8)
    assert np.array_equal(channel_to_mask(mask_to_channel(m)).numpy(), [[0, 255], [255, 0]])


def test_split_deterministic_and_order_free():
    stems = [f"s{i}" for i in range(100)]
    a = make_split(stems, 0.2, seed=3)
    b = make_split(list(reversed(stems)), 0.2, seed=3)
    c = make_split(stems, 0.2, seed=4)
    assert a == b
    assert len(a["test"]) == 20 and not set(a["test"]) & set(a["train"])
    assert set(a["test"]) | set(a["train"]) == set(stems)
    assert a["test"] != c["test"]
    json.dumps(a)
