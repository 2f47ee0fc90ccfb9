"""DICOM series + DICOM-SEG in (issue 22): the shared dcmqi fixtures read onto the same voxels as their NRRD labels,
series and SEG objects the tests write themselves (two segments, slices with one class or none), and each bad input
one clear error naming the file with nothing left half-written."""

import gzip
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed (the medical / test extra)")
pytest.importorskip("nibabel", reason="nibabel is not installed (the medical / test extra)")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from fastsynth.errors import DataError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "dicom-seg"
CT = "1.2.840.10008.5.1.4.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def _file(ds: Dataset, sop_class: str, path: Path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, n=6, rows=20, cols=16, spacing=2.0, skip=(), sizes=None, seed=0):
    """A CT-like series (int16 + rescale), slices along +z (LPS). Returns (series UID, [(SOP UID, z)])."""
    rng = np.random.default_rng(seed)
    series, out = generate_uid(), []
    for k in range(n):
        if k in skip:
            continue
        r, c = sizes[k] if sizes else (rows, cols)
        ds = Dataset()
        ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), series, "1.2.3"
        ds.Modality, ds.InstanceNumber = "CT", k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -12.0, k * spacing]
        ds.PixelSpacing = [0.5, 0.75]
        ds.Rows, ds.Columns = r, c
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (rng.integers(900, 1200, (r, c)) + 40 * k).astype(np.int16).tobytes()
        _file(ds, CT, folder / f"{k:03d}.dcm")
        out.append((ds.SOPInstanceUID, k * spacing))
    return series, out


def write_seg(path: Path, series: str, images, frames, rows=20, cols=16, labels=("Liver", "Tumour"), by_position=False):
    """A BINARY DICOM-SEG: ``frames`` is [(image index, segment number, 2D bool array)]."""
    ds = Dataset()
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid(), "1.2.3"
    ds.Modality, ds.SegmentationType = "SEG", "BINARY"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, len(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    segs = []
    for i, lab in enumerate(labels, 1):
        s = Dataset()
        s.SegmentNumber, s.SegmentLabel = i, lab
        segs.append(s)
    ds.SegmentSequence = segs
    ref = Dataset()
    ref.SeriesInstanceUID = series
    insts = []
    for uid, _ in images:
        it = Dataset()
        it.ReferencedSOPClassUID, it.ReferencedSOPInstanceUID = CT, uid
        insts.append(it)
    ref.ReferencedInstanceSequence = insts
    ds.ReferencedSeriesSequence = [ref]
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    per = []
    for k, segment, _ in frames:
        fg = Dataset()
        sid = Dataset()
        sid.ReferencedSegmentNumber = segment
        fg.SegmentIdentificationSequence = [sid]
        pp = Dataset()
        pp.ImagePositionPatient = [-10.0, -12.0, images[k][1]]
        fg.PlanePositionSequence = [pp]
        if not by_position:
            src = Dataset()
            src.ReferencedSOPClassUID, src.ReferencedSOPInstanceUID = CT, images[k][0]
            der = Dataset()
            der.SourceImageSequence = [src]
            fg.DerivationImageSequence = [der]
        per.append(fg)
    ds.PerFrameFunctionalGroupsSequence = per
    bits = np.concatenate([np.asarray(m, bool).ravel() for _, _, m in frames]).astype(np.uint8)
    ds.PixelData = pydicom.pixels.pack_bits(bits)
    _file(ds, SEG, path)


def _disc(rows=20, cols=16, r=4, cy=10, cx=8):
    yy, xx = np.mgrid[:rows, :cols]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_case(root: Path, name="case1", by_position=False, seed=0):
    series, imgs = write_series(root / name / "ct", seed=seed)
    disc, small = _disc(), _disc(r=2)
    # slices 1-3 liver, slice 2 also tumour (inside the liver), slice 4 tumour only, slices 0 and 5 empty
    frames = [(1, 1, disc), (2, 1, disc), (3, 1, disc), (2, 2, small), (4, 2, small)]
    write_seg(root / name / "seg.dcm", series, imgs, frames, by_position=by_position)
    return imgs


def test_two_segments_per_dataset_classes_and_slices(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    from PIL import Image

    from fastsynth.data.volumes import slice_volumes

    make_case(tmp_path / "d", "case1")
    make_case(tmp_path / "d", "case2", by_position=True, seed=1)
    out, rec = slice_volumes(tmp_path / "d", empty_fraction=0.0)
    assert rec["class_names"] == ["background", "Liver", "Tumour"]
    assert set(rec["volumes"]) == {"case1_seg", "case2_seg"}
    v = rec["volumes"]["case1_seg"]
    assert v["slices"] == [1, 2, 3, 4] and v["spacing"] == [0.75, 0.5, 2.0] and v["n_foreground"] == 4
    masks = {p.stem: np.array(Image.open(p)) for p in sorted((out / "masks").iterdir())}
    for case in ("case1_seg", "case2_seg"):  # frames placed by source image and by position agree
        m = [masks[f"{case}-s{k:03d}"] for k in (1, 2, 3, 4)]
        assert set(np.unique(m[0])) == {0, 1}                 # liver only: a normal slice of a 3-class dataset
        assert set(np.unique(m[1])) == {0, 1, 2}              # liver with tumour inside
        assert set(np.unique(m[3])) == {0, 2}                 # tumour only
        assert (m[1] == 2).sum() == _disc(r=2).sum() and (m[0] == 1).sum() == _disc().sum()
    # intensities follow the slices (+40 HU per slice in the written series): axial order kept
    img = {k: np.array(Image.open(out / "images" / f"case1_seg-s{k:03d}.png")).astype(float).mean() for k in (1, 4)}
    assert img[4] > img[1]


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/dicom-seg is not here")
def test_dcmqi_fixtures_match_their_nrrd_labels():
    from fastsynth.data.dicom import _segments, find_dicom, load_case

    def nrrd(p):
        raw = p.read_bytes()
        i = raw.index(b"\n\n")
        sizes = [int(x) for x in next(line for line in raw[:i].decode().splitlines()
                                      if line.startswith("sizes:")).split()[1:]]
        assert b"space: left-posterior-superior" in raw[:i] and b"encoding: gzip" in raw[:i]
        return np.frombuffer(gzip.decompress(raw[i + 2:]), "<i2").reshape(sizes[::-1]).transpose(2, 1, 0)

    cases = {c.name: c for c in find_dicom(FIXTURES)}
    names = _segments(list(cases.values()))
    assert names == ["background", "Liver"]
    for name, ref in (("liver", "liver_seg.nrrd"), ("23x38x3_seg_label", "23x38x3/nrrd/label.nrrd")):
        img, lab = load_case(cases[name], names)
        want = nrrd(FIXTURES / ref)[::-1, ::-1, :]  # NRRD in LPS; ours is RAS+: x and y reversed
        got = np.asarray(lab.dataobj)
        assert got.shape == want.shape and (got == want).all() and got.sum() > 0
        assert np.allclose(img.affine, lab.affine)


def _refused(tmp_path, monkeypatch, root: Path, *words):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    from fastsynth.data.volumes import slice_volumes

    with pytest.raises(DataError) as e:
        slice_volumes(root)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    vols = tmp_path / "cache" / "volumes"
    assert not vols.exists() or not any(vols.iterdir()), "a half-written slice folder was left"
    return msg


def test_missing_slice_refused(tmp_path, monkeypatch):
    series, imgs = write_series(tmp_path / "d" / "ct", skip=(3,))
    write_seg(tmp_path / "d" / "seg.dcm", series, imgs, [(1, 1, _disc())])
    _refused(tmp_path, monkeypatch, tmp_path / "d", "missing slices", str(tmp_path / "d" / "ct"))


def test_mixed_sizes_refused(tmp_path, monkeypatch):
    sizes = [(20, 16)] * 6
    sizes[2] = (18, 16)
    series, imgs = write_series(tmp_path / "d" / "ct", sizes=sizes)
    write_seg(tmp_path / "d" / "seg.dcm", series, imgs, [(1, 1, _disc())])
    _refused(tmp_path, monkeypatch, tmp_path / "d", "mixed slice sizes", "ct")


def test_seg_of_another_series_refused(tmp_path, monkeypatch):
    write_series(tmp_path / "d" / "ct")
    _, other = write_series(tmp_path / "elsewhere" / "ct", seed=3)
    write_seg(tmp_path / "d" / "seg.dcm", "1.2.3.999", other, [(1, 1, _disc())])
    _refused(tmp_path, monkeypatch, tmp_path / "d", "seg.dcm", "refers to series 1.2.3.999")


def test_seg_frame_of_an_image_not_in_the_series_refused(tmp_path, monkeypatch):
    series, imgs = write_series(tmp_path / "d" / "ct")
    imgs = list(imgs)
    imgs[2] = ("1.2.3.4.5.6", imgs[2][1])
    write_seg(tmp_path / "d" / "seg.dcm", series, imgs, [(2, 1, _disc())])
    _refused(tmp_path, monkeypatch, tmp_path / "d", "seg.dcm", "refers to image 1.2.3.4.5.6")


def test_seg_of_another_size_refused(tmp_path, monkeypatch):
    series, imgs = write_series(tmp_path / "d" / "ct")
    write_seg(tmp_path / "d" / "seg.dcm", series, imgs, [(1, 1, np.ones((10, 8), bool))], rows=10, cols=8)
    _refused(tmp_path, monkeypatch, tmp_path / "d", "seg.dcm", "10x8")


def test_train_cli_reads_dicom_and_bad_dicom_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    make_case(tmp_path / "d", "case1")
    make_case(tmp_path / "d", "case2", seed=1)
    env = {**os.environ, "FASTSYNTH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "fastsynth", "train", "--data", str(tmp_path / "d"), "--out",
                        str(tmp_path / "run"), "--steps", "2", "--preset", "tiny", "--resolution", "16",
                        "--batch-size", "2", "--no-progress", "--test-fraction", "0.5"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    split = json.loads((tmp_path / "run" / "split.json").read_text())
    sides = {s.rsplit("-s", 1)[0]: k for k in ("train", "test") for s in split[k]}
    assert len(sides) == 2 and set(sides.values()) == {"train", "test"}  # one whole volume on each side
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert cfg["class_names"] == ["background", "Liver", "Tumour"]  # the SEGs' segment labels, a 3-class model

    series, imgs = write_series(tmp_path / "bad" / "ct", skip=(2,))
    write_seg(tmp_path / "bad" / "seg.dcm", series, imgs, [(1, 1, _disc())])
    r = subprocess.run([sys.executable, "-m", "fastsynth", "train", "--data", str(tmp_path / "bad"), "--out",
                        str(tmp_path / "run2"), "--steps", "2", "--preset", "tiny", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "missing slices" in r.stderr, r.stderr
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("which", ["binary", "labels"])
def test_generate_format_nifti(which, tiny_model_dir, tmp_path, monkeypatch):
    """--format nifti: each pair as a 2D NIfTI image + label on one grid with the model's pixel spacing (a volume
    model's, from its training volumes; unit for 2D sources), 16-bit kept, labels as class indices; read back by
    evaluate's reader as written, and loadable with the `datasets` snippet of the card."""
    import json

    from fastsynth.config import GenerateConfig
    from fastsynth.metrics.io import load_synthetic
    from fastsynth.pipeline import generate

    nib = pytest.importorskip("nibabel")
    if which == "labels":  # a 3-class 16-bit model trained on DICOM volumes (spacing 0.5 x 0.75 mm, 20x16 slices)
        from fastsynth.config import TrainConfig
        from fastsynth.training import train

        make_case(tmp_path / "d", "case1")
        make_case(tmp_path / "d", "case2", seed=1)
        monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
        train(TrainConfig(data=str(tmp_path / "d"), out=str(tmp_path / "run"), preset="tiny", resolution=16,
                          steps=2, batch_size=2, checkpoint_every=10, test_fraction=0.5, warmup_steps=1),
              progress=False)
        model = tmp_path / "run" / "model"
        meta = json.loads((model / "fastsynth.json").read_text())
        # 16 px of a 20 x 16 slice: the centre crop is 16 x 16 voxels, so the spacing is unchanged by the resize
        assert meta["training"]["volumes"]["pixel_spacing"] == [0.5, 0.75]
        want_spacing = (0.75, 0.5)  # NIfTI x = columns, y = rows
    else:
        model, want_spacing = tiny_model_dir, (1.0, 1.0)
    out = tmp_path / "nifti"
    generate(GenerateConfig(n=4, steps=2, batch_size=2, shard_size=2, backend="eager", sampler="ddim", redraw=False,
                            format="nifti"), out, model=str(model), progress=False)
    m = json.loads((out / "fastsynth.json").read_text())
    assert m["complete"] and m["format"] == "nifti"
    imgs, labs = sorted((out / "images").glob("*.nii.gz")), sorted((out / "labels").glob("*.nii.gz"))
    assert len(imgs) == len(labs) == 4
    s = load_synthetic(out)
    for k, (fi, fl) in enumerate(zip(imgs, labs)):
        im, la = nib.load(str(fi)), nib.load(str(fl))
        assert np.allclose(im.affine, la.affine) and np.allclose(im.header.get_zooms()[:2], want_spacing)
        a, b = np.asarray(im.dataobj), np.asarray(la.dataobj)
        assert b.shape[:2] == a.shape[:2] and set(np.unique(b).tolist()) <= ({0, 1} if which == "binary" else {0, 1, 2})
        if which == "labels":
            assert a.dtype == np.uint16 and a.ndim == 3  # 16-bit grey stays 16-bit
            got_mask = np.flipud(b[:, :, 0].T)
            assert np.array_equal(got_mask, s.masks[k])  # the orientation evaluate reads is the one written
        else:
            assert a.dtype == np.uint8 and a.shape[-1] == 3  # RGB as the vector dimension
            assert np.array_equal((np.flipud(b[:, :, 0].T) > 0) * 255, s.masks[k])
    assert "Nifti()" in (out / "README.md").read_text()
    datasets = pytest.importorskip("datasets")
    root = str(out) + "/"
    ds = datasets.load_dataset("json", data_files=root + "shards/*.jsonl", split="train")
    ds = ds.map(lambda r: {"image": root + r["image"], "mask": root + r["mask"]})
    ds = ds.cast_column("image", datasets.Nifti()).cast_column("mask", datasets.Nifti())
    assert len(ds) == 4 and np.asarray(ds[0]["mask"].dataobj).shape[:2] == np.asarray(ds[0]["image"].dataobj).shape[:2]
