"""Does a latent model's filter on the latent grid (``fastsynth train-filter``) keep the pairs its image filter
keeps? Scores the same unfiltered candidates both ways: the model's own image filter (the judge's real segmenter on
the decoded 256² pair, scored at 128²) and the latent filter (the same pair's latent, before decoding).

    fastsynth train-filter --model bundled-256 --out /tmp/lf/seg
    python benchmarks/latent_scorer_probe.py --model bundled-256 --filter /tmp/lf/seg --work /tmp/ls --n 1024

Prints one JSON: rank correlation of the two scores, the kept sets' overlap at equal acceptance, and the image
filter's agreement within the pairs each one keeps.
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
    ap.add_argument("--model", default="bundled-256")
    ap.add_argument("--filter", required=True, help="a latent filter folder (fastsynth train-filter)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--n", type=int, default=1024, help="unfiltered candidates to score")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from safetensors.torch import load_file, save_file

    from fastsynth.config import GenerateConfig
    from fastsynth.metrics.io import load_synthetic
    from fastsynth.models import resolve_model_dir
    from fastsynth.models.latent import LatentSpace
    from fastsynth.pipeline import generate
    from fastsynth.runtime.agreement import AgreementScorer

    mdir = resolve_model_dir(args.model)
    filt = json.loads((mdir / "fastsynth.json").read_text())["generate_defaults"]["pairs"]
    pix = AgreementScorer(mdir / filt["keep_agreeing"], "cpu", "onnx")
    lat = AgreementScorer(args.filter, "cpu")
    out = {"model": args.model, "filter": json.loads((Path(args.filter) / "fastsynth.json").read_text())["scores"]}

    cand, zfile = work / "cand", work / "cand_latents.safetensors"
    if not zfile.exists():  # unfiltered candidates (the model's defaults otherwise), with the latents decoded
        seen = []
        orig = LatentSpace.decode_images

        def capture(self, z):
            seen.append((z.detach().float().cpu() * self.std + self.mean).clone())
            return orig(self, z)

        LatentSpace.decode_images = capture
        t0 = time.perf_counter()
        generate(GenerateConfig(n=args.n, keep_agreeing="none"), cand, model=args.model, progress=False)
        LatentSpace.decode_images = orig
        out["generate_s"] = round(time.perf_counter() - t0, 1)
        save_file({"z": torch.cat(seen).contiguous()}, str(zfile))
    z = load_file(str(zfile))["z"]
    syn = load_synthetic(cand)  # sorted by row: the order the decoder saw them in (one process, one pass)
    assert len(syn.images) == len(z), (len(syn.images), len(z))
    t0 = time.perf_counter()
    a_pix = pix(syn.images, syn.masks)
    out["image_filter_ms_per_pair"] = 1000 * (time.perf_counter() - t0) / len(z)
    t0 = time.perf_counter()
    a_lat = lat.score_latents(z, syn.masks)
    out["latent_filter_ms_per_pair"] = 1000 * (time.perf_counter() - t0) / len(z)

    from scipy.stats import pearsonr, spearmanr

    out["spearman"], out["pearson"] = float(spearmanr(a_pix, a_lat)[0]), float(pearsonr(a_pix, a_lat)[0])
    thr = float(filt["min_agreement"])
    kp = a_pix >= thr
    lt = float(np.quantile(a_lat, 1 - kp.mean()))  # the latent threshold that keeps as many
    kl = a_lat >= lt
    out["image_filter"] = {"threshold": thr, "kept": float(kp.mean())}
    out["latent_filter_equal_acceptance"] = {"threshold": lt, "kept": float(kl.mean()),
                                             "jaccard_with_image_kept": float((kp & kl).sum() / (kp | kl).sum())}
    out["image_agreement_mean"] = {"all": float(a_pix.mean()), "image_kept": float(a_pix[kp].mean()),
                                   "latent_kept": float(a_pix[kl].mean()),
                                   "random_half_sd": float(np.std([a_pix[np.random.default_rng(s).random(len(a_pix))
                                                                         < kp.mean()].mean() for s in range(200)]))}
    out["latent_agreement_mean"] = {"all": float(a_lat.mean()), "image_kept": float(a_lat[kp].mean()),
                                    "latent_kept": float(a_lat[kl].mean())}
    np.savez(work / "scores.npz", image=a_pix, latent=a_lat)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
