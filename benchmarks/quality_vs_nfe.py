"""Quality against the number of network evaluations (NFE) for each sampler, on the bundled model.

For every (sampler, NFE) the same N seeds are sampled (unconditional pairs), then compared with the real
training images at the model's resolution: FID and KID (TF-Inception, clean-fid resize; N is small, so read
FID as a relative measure between settings, not as a publishable number), and mask statistics (polyp area
Wasserstein distance, connected-component histogram TV distance). Writes JSON + a PNG plot.
A grid entry ``SAMPLER@MODEL_DIR:NFE`` evaluates another model with the same seeds (e.g. distilled students:
``distilled@runs/pd/round-2-4steps:4``).

    python benchmarks/quality_vs_nfe.py --n 128 --out benchmarks/results/quality_vs_nfe_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared/data/kvasir-seg"))
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--grid", default="dpmpp:4,6,8,12,20,50;unipc:4,6,8,12,20;ddim:10,20,50;ddpm:200")
    ap.add_argument("--ddpm-n", type=int, default=64, help="samples for the slow DDPM reference")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="eager")
    ap.add_argument("--out", default="benchmarks/results/quality_vs_nfe_cpu.json")
    ap.add_argument("--reference", default=None, metavar="SAMPLER:NFE",
                    help="a grid row (of the base model) every row is also compared with, seed by seed: PSNR of "
                         "the images and Dice of the masks (how closely a few-step sampler or a distilled "
                         "student follows that sampler's trajectories)")
    a = ap.parse_args()

    from fastsynth.bench import environment
    from fastsynth.config import GenerateConfig
    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.metrics.fid import InceptionFeatures, fid_kid, reference_features
    from fastsynth.metrics.masks import compare, mask_stats
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.runtime import make_model_fn
    from fastsynth.sampling import make_scheduler, opening_size, resolve_sampler

    mdir = resolve_model_dir(a.model)
    net, meta = load_model(mdir)
    res = net.config.resolution
    split = json.loads((mdir / "split.json").read_text())
    src = scan_pairs(a.real)
    _, real = load_pairs(src, res, split["train"])
    real_img = real[:, :3].transpose(0, 2, 3, 1)
    real_masks = real[:, 3]
    ext = InceptionFeatures(batch_size=64)
    t0 = time.perf_counter()
    real_feats, info = reference_features(real_img, ext)
    print(f"real features: {len(real_feats)} images ({time.perf_counter() - t0:.0f}s, cache hit {info['cache_hit']})")
    real_ms = mask_stats(real_masks)
    model_fn = make_model_fn(net, a.backend, "cpu")
    cond = Conditioning("pairs", [], None, "")
    records = []
    models = {None: (net, meta, model_fn)}
    outputs = []
    for part in a.grid.split(";"):
        sampler, nfes = part.split(":")
        other = None
        if "@" in sampler:  # SAMPLER@MODEL_DIR: another model (e.g. a distilled student), same seeds and reference
            sampler, other = sampler.split("@", 1)
            if other not in models:
                o_net, o_meta = load_model(other)
                models[other] = (o_net, o_meta, make_model_fn(o_net, a.backend, "cpu"))
        net, meta, model_fn = models[other]
        for nfe in (int(v) for v in nfes.split(",")):
            n = a.ddpm_n if sampler == "ddpm" else a.n
            _, _, grid = resolve_sampler(sampler, nfe, meta)
            cfg = GenerateConfig(sampler=sampler, steps=nfe, seed=0, redraw=False)  # one pass: the sampler alone
            sch = make_scheduler(sampler, net.config.num_train_timesteps, net.config.beta_schedule,
                                 net.config.prediction_type, grid=grid)
            ims, mks = [], []
            t0 = time.perf_counter()
            for s in range(0, n, a.batch_size):
                idx = np.arange(s, min(n, s + a.batch_size))
                seeds = np.array([row_seed(0, i) for i in idx])
                im, mk, _ = sample_pairs(model_fn, sch, cfg, cond, idx, seeds, res, 0, opening_size(res), torch.device("cpu"))
                ims.append(im)
                mks.append(mk)
            gen_s = time.perf_counter() - t0
            ims, mks = np.concatenate(ims), np.concatenate(mks)
            fk = fid_kid(ext(ims), real_feats, kid_subset_size=min(n, 100))
            mc = compare(mask_stats(mks), real_ms)
            r = {"sampler": sampler if other is None else f"{sampler}@{Path(other).name}", "model": other or str(mdir),
                 "nfe": nfe, "n": n, "fid": fk["fid"], "kid": fk["kid"], "kid_std": fk["kid_std"],
                 "mask_area_wasserstein": mc["area_fraction_wasserstein"], "mask_components_tv": mc["components_tv"],
                 "empty_mask_fraction": float(np.mean(mks.reshape(len(mks), -1).max(1) == 0)),
                 "sampling_seconds": gen_s}
            records.append(r)
            outputs.append((r, ims, mks, other is None and f"{sampler}:{nfe}" == a.reference))
            print(json.dumps(r), flush=True)
    ref = [(im, mk) for _, im, mk, is_ref in outputs if is_ref]
    if a.reference and not ref:
        raise SystemExit(f"--reference {a.reference}: not a row of the base model in --grid")
    for r, ims, mks, _ in outputs if ref else ():
        rim, rmk = ref[0]
        k = min(len(ims), len(rim))
        mse = ((ims[:k].astype(np.float64) - rim[:k]) ** 2).reshape(k, -1).mean(1)
        r["psnr_vs_reference"] = float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))
        p, t = mks[:k].reshape(k, -1) >= 128, rmk[:k].reshape(k, -1) >= 128
        inter, tot = (p & t).sum(1), p.sum(1) + t.sum(1)
        r["mask_dice_vs_reference"] = float(np.mean(np.where(tot == 0, 1.0, 2 * inter / np.maximum(tot, 1))))
        r["reference"] = a.reference
        print(f"{r['sampler']} x{r['nfe']}: PSNR {r['psnr_vs_reference']:.2f} dB, mask Dice "
              f"{r['mask_dice_vs_reference']:.3f} vs {a.reference}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net, meta, _ = models[None]
    result = {"command": "python " + " ".join(sys.argv), "environment": environment(torch.device("cpu")),
              "model": str(mdir), "model_steps_trained": meta.get("training", {}).get("steps_done"),
              "reference": f"{len(real_feats)} real training images at {res}x{res}", "records": records}
    out.write_text(json.dumps(result, indent=2) + "\n")
    plot(records, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(records, path: Path) -> None:
    """FID vs NFE (log x), one line per sampler, drawn with PIL."""
    from PIL import Image, ImageDraw

    W, H, L, B, T, R = 720, 420, 60, 50, 30, 140
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    nfes = [r["nfe"] for r in records]
    fids = [r["fid"] for r in records]
    lx0, lx1 = np.log(min(nfes)), np.log(max(nfes))
    f0, f1 = 0.0, max(fids) * 1.05
    X = lambda v: L + (np.log(v) - lx0) / max(1e-9, lx1 - lx0) * (W - L - R)
    Y = lambda v: H - B - (v - f0) / max(1e-9, f1 - f0) * (H - B - T)
    d.line([(L, T), (L, H - B), (W - R, H - B)], fill="black")
    for v in sorted(set(nfes)):
        d.text((X(v) - 6, H - B + 5), str(v), fill="black")
    for k in range(5):
        v = f0 + (f1 - f0) * k / 4
        d.text((5, Y(v) - 6), f"{v:.0f}", fill="black")
    d.text((W // 2 - 60, H - 20), "network evaluations (NFE, log)", fill="black")
    d.text((L, 8), "FID vs NFE (lower is better)", fill="black")
    colors = {"dpmpp": "#d62728", "unipc": "#1f77b4", "ddim": "#2ca02c", "ddpm": "#9467bd"}
    for i, s in enumerate(dict.fromkeys(r["sampler"] for r in records)):
        pts = [(X(r["nfe"]), Y(r["fid"])) for r in records if r["sampler"] == s]
        if len(pts) > 1:
            d.line(pts, fill=colors.get(s, "black"), width=2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colors.get(s, "black"))
        d.text((W - R + 15, T + 20 * i), s, fill=colors.get(s, "black"))
    img.save(path)


if __name__ == "__main__":
    main()
