"""The threshold of a latent filter that keeps as many candidates as the model's image filter: scores the probe's
unfiltered candidates (their latents and pairs from `benchmarks/latent_scorer_probe.py --work /tmp/ls`, their
image-filter agreement in its scores.npz) with the latent filter and takes the quantile at the image filter's
acceptance (Dice >= 0.69 for bundled-256). Prints one JSON.

    python benchmarks/latent_filter_threshold.py --filter /tmp/dl/seg --work /tmp/ls
"""
import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filter", required=True)
    ap.add_argument("--work", default="/tmp/ls")
    ap.add_argument("--image-threshold", type=float, default=0.69)
    args = ap.parse_args()
    from safetensors.torch import load_file
    from scipy.stats import spearmanr

    from fastsynth.metrics.io import load_synthetic
    from fastsynth.runtime.agreement import AgreementScorer

    z = load_file(f"{args.work}/cand_latents.safetensors")["z"]
    syn = load_synthetic(f"{args.work}/cand")
    a = np.load(f"{args.work}/scores.npz")["image"]
    s = AgreementScorer(args.filter, "cpu").score_latents(z, syn.masks)
    acc = float((a >= args.image_threshold).mean())
    print(json.dumps({"candidates": len(a), "image_acceptance": acc, "threshold": float(np.quantile(s, 1 - acc)),
                      "spearman": float(spearmanr(a, s)[0])}))


if __name__ == "__main__":
    main()
