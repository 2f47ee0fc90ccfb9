"""Judge models (recipe arms, checkpoints) side by side on the same seeds: grain, masks, optionally KID and
label agreement.

Every model samples the same N unconditional pairs with the default sampler (UniPC x6), eager, and is compared
with the real training images of the bundled model's split at 64x64:
- grain: adjacent-pixel difference and spectral power above 0.25 cycles/pixel (``fastsynth.metrics.texture``);
- masks: mean polyp area fraction, share of empty masks, area Wasserstein distance to the real masks;
- ``--kid``: FID/KID against the training images (TF-Inception, clean-fid resize; slow on a CPU);
- ``--agreement``: label agreement, Dice of segmenters trained on real pairs (the downstream judge's cached
  real-only segmenters, 3 seeds) against the generated masks.

    python benchmarks/recipe_study.py --n 128 --models bundled,runs/study/armA-v-771,runs/study/armB-minsnr-766 \
        --out benchmarks/results/recipe_study_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma list of model folders, run folders or 'bundled'")
    ap.add_argument("--labels", default=None, help="semicolon-separated row names (default: the model paths)")
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared/data/kvasir-seg"))
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--sampler", default="unipc:6")
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--redraw", action="store_true")
    ap.add_argument("--kid", action="store_true")
    ap.add_argument("--agreement", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    from fastsynth.bench import environment
    from fastsynth.config import GenerateConfig
    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.metrics.masks import compare, mask_stats
    from fastsynth.metrics.texture import hf_energy_report
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.sampling import make_scheduler, opening_size

    split = json.loads((resolve_model_dir(None) / "split.json").read_text())
    src = scan_pairs(a.real)
    _, real = load_pairs(src, 64, split["train"])
    _, test = load_pairs(src, 64, split["test"])
    real_img = real[:, :3].transpose(0, 2, 3, 1)
    real_ms = mask_stats(real[:, 3])
    sampler, steps = a.sampler.split(":")
    cfg = GenerateConfig(sampler=sampler, steps=int(steps), guidance=a.guidance, redraw=a.redraw)
    idx = np.arange(a.n)
    seeds = np.array([row_seed(0, i) for i in idx], np.int64)
    ext = real_feats = None
    if a.kid:
        from fastsynth.metrics.fid import InceptionFeatures, fid_kid, reference_features

        ext = InceptionFeatures(batch_size=64)
        real_feats, _ = reference_features(real_img, ext)
    real_segs = None
    if a.agreement:
        from fastsynth.metrics import downstream as ds

        real_segs, real_run = [], []
        for k in range(a.seeds):  # the downstream judge's real-only segmenters (cached after its first run)
            scfg = ds.SegConfig(seed=k)
            m, _ = ds._cached_segmenter(scfg, real, np.arange(len(real)), "cpu")
            if m is None:
                m, info = ds.train_segmenter(scfg, real, None, np.arange(len(real)))
                ds._store_segmenter(m, scfg, real, np.arange(len(real)), info)
            real_segs.append(m)
            real_run.append(ds.score(m, test))
        real_run = {"test": {"heldout": ds.aggregate(real_run)}}
    labels = a.labels.split(";") if a.labels else a.models.split(",")
    rows = []
    for label, spec in zip(labels, a.models.split(",")):
        net, meta = load_model(None if spec == "bundled" else spec)
        c = net.config
        sch = make_scheduler(sampler, c.num_train_timesteps, c.beta_schedule, c.prediction_type)
        t0 = time.perf_counter()
        ims, mks = [], []
        for b in range(0, a.n, 64):
            im, mk, _ = sample_pairs(lambda x, t, cond: net(x, t, cond), sch, cfg, Conditioning("pairs", [], None, ""),
                                     idx[b:b + 64], seeds[b:b + 64], c.resolution, 0, opening_size(c.resolution),
                                     torch.device("cpu"))
            ims.append(im)
            mks.append(mk)
        im, mk = np.concatenate(ims), np.concatenate(mks)
        hf = hf_energy_report(im, real_img)
        ms = mask_stats(mk)
        dist = compare(ms, real_ms, 0)
        row = {"label": label, "model": spec, "steps_trained": meta.get("training", {}).get("steps_done"),
               "loss_weighting": meta.get("training", {}).get("loss_weighting", "v"),
               "train_command": meta.get("training", {}).get("command"),
               "sampling_seconds": round(time.perf_counter() - t0, 1),
               "hf": hf["synthetic"], "hf_real": hf["real"], "hf_ratio": hf["ratio"],
               "hf_power": hf["hf_power_fraction_synthetic"], "hf_power_real": hf["hf_power_fraction_real"],
               "mask_area": float((mk > 0).mean()), "mask_area_real": float((real[:, 3] >= 128).mean()),
               "empty_masks": float(((mk > 0).reshape(len(mk), -1).sum(1) == 0).mean()),
               "mask_area_w1": dist.get("area_fraction_wasserstein")}
        if a.kid:
            fk = fid_kid(ext(im), real_feats, seed=0)
            row.update(fid=fk["fid"], kid=fk["kid"], kid_std=fk["kid_std"])
        if real_segs is not None:
            from fastsynth.metrics.downstream import label_agreement

            arr = np.concatenate([im.transpose(0, 3, 1, 2), mk[:, None]], 1)
            row["agreement"] = label_agreement(real_segs, arr, real_run)
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k not in ("train_command", "agreement")}),
              (f"agreement {row['agreement']['dice']:.3f} ± {row['agreement']['dice_seed_std']:.3f} "
               f"(real held-out {row['agreement']['real_heldout_dice']:.3f})" if "agreement" in row else ""),
              flush=True)
    out = {"environment": environment(torch.device("cpu")), "n": a.n, "sampler": a.sampler, "guidance": a.guidance,
           "redraw": a.redraw, "real": "Kvasir-SEG train split of the bundled model (900 images, 64x64)", "rows": rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
