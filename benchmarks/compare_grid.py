"""Side-by-side rows of generated datasets at one display size (image with its mask's contour in green), e.g. the
256^2 latent data against the 64^2 model's data upsampled, as the 128^2 judge sees them.

    python benchmarks/compare_grid.py /tmp/judge/l256 /tmp/judge/b64 --n 8 --size 128 --out benchmarks/results/x.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image


def contour(mask: np.ndarray) -> np.ndarray:
    m = mask > 0
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m & ~inner


def main() -> None:
    from fastsynth.metrics.io import load_synthetic

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dirs", nargs="+", help="generated dataset folders, one row each")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=128, help="display size of every tile (bicubic image, nearest mask)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = []
    for d in a.dirs:
        s = load_synthetic(d, limit=a.n, seed=0)
        tiles = []
        for im, mk in zip(s.images, s.masks):
            t = np.asarray(Image.fromarray(im).resize((a.size, a.size), Image.BICUBIC)).copy()
            m = np.asarray(Image.fromarray(mk).resize((a.size, a.size), Image.NEAREST))
            t[contour(m)] = (0, 255, 0)
            tiles.append(t)
        rows.append(np.concatenate(tiles, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(a.out, optimize=True)
    print(a.out)


if __name__ == "__main__":
    main()
