"""The README's sample grid: generated pairs (image with its mask's contour) from the bundled model.
(No real images are drawn: the Kvasir-SEG data and copies of it are never committed.)

    python benchmarks/sample_grid.py --out benchmarks/results/samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--sampler", default=None, help="default: the model's own, else unipc")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/samples.png")
    a = ap.parse_args()

    from fastsynth.config import GenerateConfig
    from fastsynth.metrics.plots import sample_grid
    from fastsynth.models import load_model
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.runtime import make_model_fn
    from fastsynth.sampling import make_scheduler, opening_size, resolve_sampler

    net, meta = load_model(a.model)
    res = net.config.resolution
    sampler, steps, grid = resolve_sampler(a.sampler, a.steps, meta)
    fn = make_model_fn(net, "eager", "cpu")
    sch = make_scheduler(sampler, net.config.num_train_timesteps, net.config.beta_schedule,
                         net.config.prediction_type, grid=grid)
    idx = np.arange(a.n)
    im, mk, _ = sample_pairs(fn, sch, GenerateConfig(sampler=sampler, steps=steps), Conditioning("pairs", [], None, ""),
                             idx, np.array([row_seed(a.seed, i) for i in idx]), res, 0, opening_size(res),
                             torch.device("cpu"))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sample_grid(im, mk, out, n=a.n, cols=8)
    print(f"wrote {out} ({a.n} synthetic pairs, {sampler} x{steps})")


if __name__ == "__main__":
    main()
