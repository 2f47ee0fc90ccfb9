"""DICOM series with DICOM-SEG segmentations in: each SEG object and the image series it refers to become one
image/label volume pair on the series' grid, with an affine in NIfTI's RAS+ world, so the volume stage
(``fastsynth.data.volumes``) slices them exactly as it slices NIfTI volumes.

Read with pydicom alone (the ``medical`` extra): a SEG is its frames plus the per-frame functional groups naming each
frame's segment and the image it was derived from (``DerivationImageSequence``; the frame's position when that is
absent). Segments become classes by their label (``SegmentLabel``), decided once for the whole folder: the same
label in two SEGs is the same class, numbered in order of first appearance. A voxel claimed by two segments takes
the later one. FRACTIONAL segmentations are thresholded at half their maximum.

Bad input is one clear error naming the file: a series with missing slices (a gap in the positions), mixed sizes or
orientations; a SEG that refers to a series not in the folder, or to images not in its series; a SEG of another
size than its images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, require

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage


@dataclass
class DicomCase:
    """One volume: a SEG file and the image files of the series it refers to."""

    name: str
    seg: Path
    images: list[Path] = field(default_factory=list)
    segments: dict[int, str] = field(default_factory=dict)  # segment number -> label, from the SEG's header

    @property
    def files(self) -> list[Path]:
        return [self.seg, *self.images]


def _pydicom():
    return require("pydicom", "medical", "Reading DICOM series and DICOM-SEG")


_NOT_DICOM = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".json", ".arrow", ".parquet", ".gz", ".nii",
              ".txt", ".md", ".csv", ".nrrd", ".npz", ".npy", ".safetensors", ".py"}


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in _NOT_DICOM:
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def find_dicom(root: str | os.PathLike) -> list[DicomCase] | None:
    """The DICOM-SEG cases under ``root`` (searched recursively), or None when it holds no DICOM-SEG file."""
    root = Path(root)
    if not root.is_dir():
        return None
    files = sorted(p for p in root.rglob("*") if p.is_file() and _is_dicom(p))
    if not files:
        return None
    pydicom = _pydicom()
    series: dict[str, list[Path]] = {}
    segs: list[tuple[Path, object]] = []
    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception as exc:
            raise DataError(f"{p}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None
        if str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS or ds.get("Modality") == "SEG":
            segs.append((p, ds))
        else:
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(p)
    if not segs:
        return None
    cases, used = [], set()
    for p, ds in segs:
        refs = [str(r.SeriesInstanceUID) for r in ds.get("ReferencedSeriesSequence", [])]
        if not refs:
            raise DataError(f"{p}: DICOM-SEG without a ReferencedSeriesSequence; cannot tell which images it segments")
        found = [u for u in refs if u in series]
        if not found:
            raise DataError(f"{p}: DICOM-SEG refers to series {refs[0]}, which is not among the DICOM files under "
                            f"{root} ({len(series)} image series found)")
        rel = p.relative_to(root).with_suffix("")
        name = "_".join(rel.parts).replace(" ", "_") or p.stem
        while name in used:
            name += "_"
        used.add(name)
        segments = {int(sg.SegmentNumber): _segment_label(sg) for sg in ds.get("SegmentSequence", [])}
        cases.append(DicomCase(name, p, sorted(series[found[0]]), segments))
    return cases


def _segment_label(item) -> str:
    """A SegmentSequence item's class name: its SegmentLabel, else ``segment<number>``."""
    return str(item.get("SegmentLabel", f"segment{int(item.SegmentNumber)}"))


def _affine_lps_to_ras(origin, row_cos, col_cos, normal, spacing_rc, spacing_s) -> np.ndarray:
    """The voxel (column, row, slice) -> RAS+ world affine of a DICOM stack (DICOM's patient axes are LPS)."""
    a = np.eye(4)
    a[:3, 0] = np.asarray(row_cos) * spacing_rc[1]  # along a row: the column index, spaced by the column spacing
    a[:3, 1] = np.asarray(col_cos) * spacing_rc[0]
    a[:3, 2] = np.asarray(normal) * spacing_s
    a[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a


def _series(files: list[Path]):
    """(volume (columns, rows, slices) float64, affine RAS+, {SOPInstanceUID: slice}, positions along the normal,
    normal) of one image series."""
    pydicom = _pydicom()
    where = files[0].parent
    items = []
    for p in files:
        try:
            ds = pydicom.dcmread(p)
            arr = ds.pixel_array
        except Exception as exc:
            raise DataError(f"{p}: unreadable DICOM image ({type(exc).__name__}: {exc})") from None
        if arr.ndim != 2:
            raise DataError(f"{p}: a multi-frame or colour image ({arr.shape}); one greyscale slice per file expected")
        try:
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
            ps = [float(v) for v in ds.PixelSpacing]
        except (AttributeError, ValueError, TypeError):
            raise DataError(f"{p}: no ImageOrientationPatient / ImagePositionPatient / PixelSpacing; cannot place "
                            "the slice in a volume") from None
        v = arr.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            v = v.max() - v
        items.append((p, str(ds.SOPInstanceUID), iop, ipp, ps, v))
    shapes = {it[5].shape for it in items}
    if len(shapes) > 1:
        raise DataError(f"{where}: a DICOM series of mixed slice sizes ({', '.join(str(s) for s in sorted(shapes))}); "
                        "one volume needs one size")
    iop0 = items[0][2]
    for it in items:
        if not np.allclose(it[2], iop0, atol=1e-4) or not np.allclose(it[4], items[0][4], atol=1e-4):
            raise DataError(f"{it[0]}: orientation or pixel spacing differs from {items[0][0].name}'s in the same series")
    row_cos, col_cos = iop0[:3], iop0[3:]
    normal = np.cross(row_cos, col_cos)
    pos = np.array([float(it[3] @ normal) for it in items])
    order = np.argsort(pos)
    items, pos = [items[i] for i in order], pos[order]
    if len(items) > 1:
        gaps = np.diff(pos)
        if gaps.min() < 1e-3:
            k = int(np.argmin(gaps))
            raise DataError(f"{items[k + 1][0]}: at the same position as {items[k][0].name}; two slices in one place")
        step = float(np.median(gaps))
        if gaps.max() > 1.5 * step:
            k = int(np.argmax(gaps))
            raise DataError(f"{where}: missing slices in the DICOM series: a gap of {gaps[k]:.3g} mm after "
                            f"{items[k][0].name} where slices are {step:.3g} mm apart")
    else:
        step = 1.0
    vol = np.stack([it[5].T for it in items], axis=-1)  # (columns, rows, slices)
    affine = _affine_lps_to_ras(items[0][3], row_cos, col_cos, normal, items[0][4], step)
    uids = {it[1]: k for k, it in enumerate(items)}
    return vol, affine, uids, pos, normal


def _segments(cases: list[DicomCase]) -> list[str]:
    """Class names decided once for all SEGs: background, then segment labels in order of first appearance."""
    names = ["background"]
    for c in cases:
        names += [lab for _, lab in sorted(c.segments.items()) if lab not in names]
    return names


def load_case(case: DicomCase, class_names: list[str]):
    """(image, label) as RAS+ canonical nibabel images of one case; labels numbered by ``class_names``."""
    nib = require("nibabel", "medical", "Reading DICOM volumes")
    pydicom = _pydicom()
    vol, affine, uids, pos, normal = _series(case.images)
    try:
        seg = pydicom.dcmread(case.seg)
        frames = seg.pixel_array
    except Exception as exc:
        raise DataError(f"{case.seg}: unreadable DICOM-SEG ({type(exc).__name__}: {exc})") from None
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[1:] != (vol.shape[1], vol.shape[0]):
        raise DataError(f"{case.seg}: segmentation frames of {frames.shape[1]}x{frames.shape[2]}, its images are "
                        f"{vol.shape[1]}x{vol.shape[0]}")
    if str(seg.get("SegmentationType", "BINARY")) == "FRACTIONAL":
        frames = frames >= max(int(seg.get("MaximumFractionalValue", 255)), 1) / 2
    cls = {number: class_names.index(label) for number, label in case.segments.items()}
    shared = seg.get("SharedFunctionalGroupsSequence", [None])[0]
    label = np.zeros(vol.shape, np.uint8)
    per_frame = seg.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != len(frames):
        raise DataError(f"{case.seg}: {len(frames)} frames but {len(per_frame)} per-frame descriptions")
    for f, fg in enumerate(per_frame):
        def item(name):
            v = fg.get(name) or (shared.get(name) if shared is not None else None)
            return v[0] if v else None
        sid = item("SegmentIdentificationSequence")
        segment = int(sid.ReferencedSegmentNumber) if sid is not None else 1
        if segment not in cls:
            raise DataError(f"{case.seg}: frame {f + 1} names segment {segment}, not in its SegmentSequence")
        k = None
        der = item("DerivationImageSequence")
        if der is not None and der.get("SourceImageSequence"):
            uid = str(der.SourceImageSequence[0].ReferencedSOPInstanceUID)
            if uid not in uids:
                raise DataError(f"{case.seg}: frame {f + 1} refers to image {uid}, which is not in the series of "
                                f"{case.images[0].parent}")
            k = uids[uid]
        else:
            pp = item("PlanePositionSequence")
            if pp is None:
                raise DataError(f"{case.seg}: frame {f + 1} names neither its source image nor its position")
            d = np.abs(pos - float(np.array([float(v) for v in pp.ImagePositionPatient]) @ normal))
            k = int(np.argmin(d))
            if d[k] > 0.25 * (float(np.median(np.diff(pos))) if len(pos) > 1 else 1.0):
                raise DataError(f"{case.seg}: frame {f + 1} lies between the slices of {case.images[0].parent}")
        label[..., k][frames[f].T > 0] = cls[segment]
    return nib.as_closest_canonical(nib.Nifti1Image(vol.astype(np.float32), affine)), \
        nib.as_closest_canonical(nib.Nifti1Image(label, affine))
