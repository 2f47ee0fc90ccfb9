"""The README's sample grids: every mode of a model, with no real image drawn.

Rows of the ``--modes`` grid (image with its mask's contour in green):
1. new pairs (image and mask from noise, the default mode);
2. given mask -> image: masks drawn here (ellipses of several sizes and places), each with its generated image;
3. inpainting, before: generated pairs (row 1's), then after: a new polyp generated inside each one's dilated mask
   region, everything outside kept.
The Kvasir-SEG data and copies of it are never committed, so the "given" masks and "before" images are synthetic.

    python benchmarks/sample_grid.py --out benchmarks/results/samples.png
    python benchmarks/sample_grid.py --modes --n 8 --out benchmarks/results/samples_modes.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def drawn_masks(n: int, res: int, seed: int, num_classes: int = 2) -> np.ndarray:
    """n elliptical masks (uint8 {0, 255}) of varied size, aspect and place; for a label map with K > 2 classes,
    nested ellipses: the outer one class K-1, each inner one the next lower class (for Sunnybrook's classes, a
    myocardium ring around the blood pool)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:res, :res]
    out = np.zeros((n, res, res), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.3, 0.7, 2) * res
        ry, rx = rng.uniform(0.08, 0.3, 2) * res
        if num_classes == 2:
            out[i] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) * 255
            continue
        ry, rx = max(ry, 0.15 * res), max(rx, 0.15 * res)
        for c in range(num_classes - 1, 0, -1):
            s = c / (num_classes - 1)
            out[i][((yy - cy) / (ry * s)) ** 2 + ((xx - cx) / (rx * s)) ** 2 <= 1] = c
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--sampler", default=None, help="default: the model's own, else unipc")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=1.0, help="guidance of the conditional rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", action="store_true", help="rows: pairs, given mask -> image, inpaint before/after")
    ap.add_argument("--out", default="benchmarks/results/samples.png")
    a = ap.parse_args()

    from fastsynth.config import GenerateConfig
    from fastsynth.conditioning import dilate_px_for
    from fastsynth.data.codec import labels_to_channels, pairs_to_x0, raw_to_rgb8
    from fastsynth.data.modality import modality_from_config
    from fastsynth.metrics.plots import sample_grid
    from fastsynth.models import load_model
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.sampling.pairs import generation_settings
    from fastsynth.runtime import make_model_fn
    from fastsynth.sampling import opening_size

    net, meta = load_model(a.model)
    res = net.config.resolution
    m = modality_from_config(net.config)
    fn = make_model_fn(net, "eager", "cpu")

    def settings(mode: str, **kw):  # generate's settings for mode with this model
        return generation_settings(GenerateConfig(mode=mode, sampler=a.sampler, steps=a.steps, **kw), meta, net.config)

    cfg, sch = settings("pairs")
    sampler, steps = cfg.sampler, cfg.steps
    idx = np.arange(a.n)
    seeds = np.array([row_seed(a.seed, i) for i in idx])
    dev, opening, dilate = torch.device("cpu"), opening_size(res), dilate_px_for(res, cfg.inpaint_dilate_px_at_256)
    im, mk, _ = sample_pairs(fn, sch, cfg, Conditioning("pairs", [], None, "", m), idx, seeds, res, 0, opening, dev)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    label_map = not m.binary
    if not a.modes:
        sample_grid(raw_to_rgb8(im, m), mk, out, n=a.n, cols=8, label_map=label_map)
        print(f"wrote {out} ({a.n} synthetic pairs, {sampler} x{steps}; {m.describe()})")
        return
    given = drawn_masks(a.n, res, a.seed, m.num_classes)
    fm = Conditioning("from-masks", [f"m{i}" for i in idx], labels_to_channels(given, m), "", m, raw=given)
    fcfg, fsch = settings("from-masks", guidance=a.guidance)
    im2, mk2, _ = sample_pairs(fn, fsch, fcfg, fm, idx, seeds, res, dilate, opening, dev)
    img_chw = im.transpose(0, 3, 1, 2) if im.ndim == 4 else im[:, None]
    raw = np.concatenate([img_chw.astype(np.int32), mk[:, None].astype(np.int32)], 1)
    ip = Conditioning("inpaint", [f"p{i}" for i in idx], pairs_to_x0(raw, m), "", m,
                      raw=np.concatenate([img_chw, mk[:, None].astype(img_chw.dtype)], 1))
    icfg, isch = settings("inpaint", guidance=a.guidance)
    im3, mk3, _ = sample_pairs(fn, isch, icfg, ip, idx, seeds ^ 1, res, dilate, opening, dev)
    rows_im = raw_to_rgb8(np.concatenate([im, im2, im, im3]), m)
    rows_mk = np.concatenate([mk, mk2, mk, mk3])
    sample_grid(rows_im, rows_mk, out, n=len(rows_im), cols=a.n, label_map=label_map)
    print(f"wrote {out}: rows = new pairs | drawn mask -> image | inpaint before | inpaint after "
          f"(pairs {sampler} x{steps}; the others {fcfg.sampler} x{fcfg.steps}, guidance {a.guidance}; "
          f"{m.describe()})")


if __name__ == "__main__":
    main()
