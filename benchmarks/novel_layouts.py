"""New polyp layouts from a model's training masks, for ``fastsynth generate --mode from-masks``: each mask is a
training mask's polyp(s) rotated, flipped, rescaled and moved (kept inside the endoscope's round field of view), in
some masks joined by a second, smaller polyp. The experiment "synthetic pairs of the cases real data lacks" of issue
21 (benchmarks/NOTES.md, 2026-12-07 evening). Only training-split masks are read, so no held-out mask leaks.

    python benchmarks/novel_layouts.py --split fastsynth/bundled/split.json --masks ../shared/data/kvasir-seg/masks \\
        --out /tmp/nm/masks --n 900
    fastsynth generate --mode from-masks --masks /tmp/nm/masks --n 900 --out /tmp/nm/fm64
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image
from scipy import ndimage


def place(canvas: np.ndarray, mask: np.ndarray, scale: float, rng, fov: float) -> bool:
    """Paste ``mask``'s foreground, rotated, maybe flipped and scaled, at a random place whose every pixel lies within
    ``fov`` * size of the centre; False when it fits nowhere (50 tries) or vanishes."""
    size = canvas.shape[0]
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
    crop = ndimage.rotate(crop, rng.uniform(0, 360), order=1, reshape=True)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = ndimage.zoom(crop, min(scale, (size - 4) / max(crop.shape)), order=1) >= 0.5
    if crop.sum() < 16:
        return False
    h, w = crop.shape
    cy, cx = np.nonzero(crop)
    for _ in range(50):
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        if (np.hypot(cy + y - size / 2, cx + x - size / 2) <= fov * size).all():
            canvas[y:y + h, x:x + w] |= crop
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", required=True, help="split.json of the model (its 'train' stems are read)")
    ap.add_argument("--masks", required=True, help="folder of the real masks")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scale", default="0.5,1.1", help="linear scale range of the first polyp (the second: 0.6x)")
    ap.add_argument("--p-second", type=float, default=0.2, help="probability of a second polyp")
    ap.add_argument("--fov", type=float, default=0.44, help="radius of the field of view, as a fraction of the size")
    args = ap.parse_args()
    lo, hi = (float(v) for v in args.scale.split(","))
    stems = json.load(open(args.split))["train"]
    files = {os.path.splitext(f)[0]: f for f in os.listdir(args.masks)}
    masks = [np.array(Image.open(os.path.join(args.masks, files[s])).convert("L")
                      .resize((args.size, args.size), Image.BILINEAR)) >= 128 for s in stems]
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    areas = []
    for i in range(args.n):
        canvas = np.zeros((args.size, args.size), bool)
        while not place(canvas, masks[rng.integers(len(masks))], np.sqrt(rng.uniform(lo ** 2, hi ** 2)), rng, args.fov):
            pass
        if rng.random() < args.p_second:
            place(canvas, masks[rng.integers(len(masks))], np.sqrt(rng.uniform(lo ** 2, (0.6 * hi) ** 2)), rng, args.fov)
        Image.fromarray((canvas * 255).astype(np.uint8)).save(os.path.join(args.out, f"layout_{i:05d}.png"))
        areas.append(canvas.mean())
    print(f"{args.n} masks in {args.out}: area p10/p50/p90 {np.percentile(areas, [10, 50, 90]).round(3)}")


if __name__ == "__main__":
    main()
