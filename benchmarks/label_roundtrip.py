"""What the model's label representation and the decoding clean-up do to *real* label maps, and how large the
structures are at the training resolution: no model involved.

Each real label map (centre-cropped and resized as training does) goes into the model's label channels (one +-1
channel per foreground class), is scaled as a sampler's output would be, and is decoded back (argmax, then the area
opening the resolution sets). Per class: Dice of the round trip with and without the clean-up, mean area fraction,
and the mean thickness (twice the mean distance to the class's edge, in pixels).

    python benchmarks/label_roundtrip.py ../shared/data/sunnybrook-lv --classes background,blood-pool,myocardium \
        --resolution 64 --json benchmarks/results/sunnybrook_label_roundtrip.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a 2D pair folder (images/ + masks/)")
    ap.add_argument("--classes", required=True, help="comma-separated class names, background first")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    from scipy import ndimage

    from fastsynth.data.codec import labels_to_channels
    from fastsynth.data.modality import detect_modality
    from fastsynth.data.pairs import load_pairs_modality, scan_pairs
    from fastsynth.sampling.masks import decode_labels, opening_size

    names = tuple(a.classes.split(","))
    src = scan_pairs(a.data)
    modality, _ = detect_modality(src, class_names=names)
    stems, arr = load_pairs_modality(src, a.resolution, modality)
    lab = arr[:, -1].astype(np.uint8)
    out: dict = {"data": Path(a.data).name, "n": len(stems), "resolution": a.resolution,
                 "opening_px": opening_size(a.resolution), "machine": platform.processor() or platform.machine()}
    for tag, op in (("no_cleanup", 0), ("cleanup", opening_size(a.resolution))):
        dec = decode_labels(labels_to_channels(lab, modality) * 0.8, 0.0, op).numpy()
        out[f"roundtrip_dice_{tag}"] = {
            names[k]: round(float(2 * ((dec == k) & (lab == k)).sum() / max((dec == k).sum() + (lab == k).sum(), 1)), 4)
            for k in range(1, len(names))}
    per = {}
    for k in range(1, len(names)):
        present = [m == k for m in lab if (m == k).any()]
        thick = [2 * ndimage.distance_transform_edt(p)[p].mean() for p in present]
        per[names[k]] = {"slices_with_class": len(present),
                         "area_fraction_mean": round(float(np.mean([(m == k).mean() for m in lab])), 4),
                         "thickness_px_mean": round(float(np.mean(thick)), 2) if thick else None}
    out["per_class"] = per
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
