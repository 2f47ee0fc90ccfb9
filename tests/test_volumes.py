"""NIfTI volumes in (issue 22): Decathlon folders and image/label volume folders become 2D slices, split by volume,
label maps decided per dataset, per-volume windows stored; bad volumes are one clear error naming the file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="nibabel is not installed (the medical / test extra)")

from fastsynth.errors import DataError  # noqa: E402


def _volume(shape=(20, 24, 12), seed=0, classes=3, dtype=np.float32, scale=1000.0):
    """An MRI-like volume (float intensities, arbitrary scale) with a 3-class structure in some slices only."""
    rng = np.random.default_rng(seed)
    img = (rng.random(shape) * 0.2 + 0.3) * scale
    lab = np.zeros(shape, np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    c = np.array(shape) / 2 + rng.integers(-2, 3, 3)
    d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2
    inside = (d2 <= 16) & (xx >= 3) & (xx < shape[2] - 3)
    lab[inside] = 1
    if classes > 2:
        lab[inside & (yy > c[1])] = 2
        lab[..., 3] = np.where(lab[..., 3] == 2, 0, lab[..., 3])  # a slice with class 1 only
    img[lab > 0] += 0.3 * scale
    return img.astype(dtype), lab


def _save(arr, path, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine), str(path))


def make_decathlon(root: Path, n=4, **kw) -> Path:
    rows = []
    for i in range(n):
        img, lab = _volume(seed=i, **kw)
        _save(img, root / "imagesTr" / f"hip_{i:03d}.nii.gz")
        _save(lab, root / "labelsTr" / f"hip_{i:03d}.nii.gz")
        rows.append({"image": f"./imagesTr/hip_{i:03d}.nii.gz", "label": f"./labelsTr/hip_{i:03d}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "Tiny", "licence": "CC-BY-SA 4.0", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "training": rows}))
    return root


def test_decathlon_folder_becomes_slices(tmp_path):
    from fastsynth.data import scan_pairs
    from fastsynth.data.modality import detect_modality
    from fastsynth.data.volumes import slice_volumes

    d, rec = slice_volumes(make_decathlon(tmp_path / "dec"), axis=2, empty_fraction=0.5)
    stems = scan_pairs(d).stems
    v = rec["volumes"]["hip_000"]
    assert rec["class_names"] == ["background", "Anterior", "Posterior"] and v["spacing"] == [1.0, 1.0, 2.0]
    assert v["window"][1] > v["window"][0] > 100  # the volume's own percentiles, in its own scale
    n_fg = v["n_foreground"]
    assert len(v["slices"]) == n_fg + round(0.5 * n_fg)  # foreground slices + a fraction of empty ones
    assert all(s.startswith("hip_") and "-s" in s for s in stems)
    m, _ = detect_modality(scan_pairs(d), class_names=tuple(rec["class_names"]))
    assert m.bits == 16 and m.channels == 1 and m.num_classes == 3  # slices with class 1 only are normal slices
    again, _ = slice_volumes(tmp_path / "dec", axis=2, empty_fraction=0.5)
    assert again == d  # cached


def test_training_on_volumes_splits_by_volume(tmp_path):
    from fastsynth.config import TrainConfig
    from fastsynth.models import load_model
    from fastsynth.training import train

    data = make_decathlon(tmp_path / "dec", n=5)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=2,
                      batch_size=4, checkpoint_every=10, test_fraction=0.4, warmup_steps=1)
    train(cfg, progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    vol = lambda s: s.rsplit("-s", 1)[0]  # noqa: E731
    assert {vol(s) for s in split["train"]}.isdisjoint({vol(s) for s in split["test"]})
    assert split["test"]
    net, meta = load_model(tmp_path / "run")
    assert net.config.class_names == ("background", "Anterior", "Posterior") and net.config.image_bits == 16
    assert meta["training"]["volumes"]["n_volumes"] == 5
    assert json.loads((tmp_path / "run" / "config.json").read_text())["group_by"] == "auto"  # resumable as given


def test_image_label_volume_folder(tmp_path):
    from fastsynth.data.volumes import find_volumes, slice_volumes

    for i in range(2):
        img, lab = _volume(seed=i, classes=2, dtype=np.uint8, scale=200)
        _save(img, tmp_path / "v" / "images" / f"case{i}.nii.gz")
        _save(lab, tmp_path / "v" / "labels" / f"case{i}.nii.gz")
    pairs, names, _ = find_volumes(tmp_path / "v")
    assert [p[0] for p in pairs] == ["case0", "case1"] and names is None
    d, rec = slice_volumes(tmp_path / "v")
    assert rec["class_names"] == ["background", "class1"] and (d / "images").is_dir()


@pytest.mark.parametrize("bad, match", [
    ("shape", "label volume of shape"),
    ("affine", "affine .* differs"),
    ("float_labels", "non-integer values"),
    ("zeros", "one value .* everywhere"),
    ("missing", "lists ./labelsTr/hip_001.nii.gz, which is missing"),
])
def test_bad_volumes_are_one_clear_line(bad, match, tmp_path):
    root = make_decathlon(tmp_path / "dec", n=2)
    f_img, f_lab = root / "imagesTr" / "hip_001.nii.gz", root / "labelsTr" / "hip_001.nii.gz"
    img, lab = _volume(seed=1)
    if bad == "shape":
        _save(lab[:, :, :10], f_lab)
    elif bad == "affine":
        _save(lab, f_lab, affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    elif bad == "float_labels":
        _save(lab.astype(np.float32) + 0.5, f_lab)
    elif bad == "zeros":
        _save(np.zeros_like(img), f_img)
    else:
        f_lab.unlink()
    r = subprocess.run([sys.executable, "-m", "fastsynth", "train", "--data", str(root), "--out",
                        str(tmp_path / "run"), "--steps", "1", "--resolution", "16", "--preset", "tiny"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "hip_001" in r.stderr and __import__("re").search(match, r.stderr), r.stderr
    assert not (tmp_path / "run").exists()


def test_evaluate_reads_the_slices_of_a_volume_run(tmp_path):
    from fastsynth.config import TrainConfig
    from fastsynth.metrics.io import resolve_real
    from fastsynth.training import train

    data = make_decathlon(tmp_path / "dec", n=3)
    train(TrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=1,
                      batch_size=2, checkpoint_every=10, test_fraction=0.34, warmup_steps=1), progress=False)
    src, rs = resolve_real(tmp_path / "run")
    assert rs.test_stems and all("-s" in s for s in rs.test_stems) and set(rs.test_stems) <= set(src.stems)


def test_share_alike_travels_from_decathlon_data_to_the_dataset_card(tmp_path):
    from fastsynth.config import GenerateConfig, TrainConfig
    from fastsynth.pipeline import generate
    from fastsynth.training import train

    data = make_decathlon(tmp_path / "dec", n=3)
    train(TrainConfig(data=str(data), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=1,
                      batch_size=2, checkpoint_every=10, test_fraction=0.34, warmup_steps=1), progress=False)
    meta = json.loads((tmp_path / "run" / "model" / "fastsynth.json").read_text())
    assert meta["training_data"]["license"] == "CC-BY-SA 4.0" and "Decathlon" in meta["training_data"]["citation"]
    generate(GenerateConfig(n=2, steps=2, batch_size=2, backend="eager", sampler="ddim", redraw=False),
             tmp_path / "ds", model=str(tmp_path / "run"), progress=False)
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "license: cc-by-sa-4.0" in card and "Share-alike" in card and "keeps the same licence" in card
