"""The FID floor an autoencoder puts under a latent model: real training images sent through the autoencoder's round
trip (encode, decode), scored like generated images are (clean-fid protocol, TF-Inception features, 256²).

A latent model's images all come out of the decoder, so even a model that drew exactly the training distribution
in latent space would score about the round trip's FID against the training images. Three numbers, one run:

- ``roundtrip_vs_train``: all N round-tripped training images against the N originals (the same reference
  `evaluate --fid-reference train` uses; the floor of a latent model that reproduced its training set);
- ``halves_real``: originals of half A against originals of half B (the yardstick "two halves of the real set");
- ``halves_roundtrip``: round-tripped half A against originals of half B (the same yardstick with the
  autoencoder's distortion added: what a perfect latent model of unseen images from this distribution would score
  at n = N/2).

    python benchmarks/ae_fid_floor.py --real bundled-256 [--resolution 256] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="a model folder or name: its split.json training stems are read")
    ap.add_argument("--autoencoder", default="taef2")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0, help="the random halves")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from fastsynth.data.codec import image_to_tensor, tensor_to_image
    from fastsynth.metrics import fid
    from fastsynth.metrics.io import load_real, resolve_real
    from fastsynth.models.autoencoder import load_autoencoder

    src, rset = resolve_real(args.real)
    _, real = load_real(src, args.resolution, rset.train_stems)
    images = real[:, :3].transpose(0, 2, 3, 1)  # uint8 [N, H, W, 3]
    ae = load_autoencoder(args.autoencoder)
    t0 = time.perf_counter()
    # 16 images at a time through the round trip, so their float copies stay small (the autoencoder batches inside)
    trip = np.concatenate([tensor_to_image(ae.decode(ae.encode(image_to_tensor(images[i:i + 16]))))
                           for i in range(0, len(images), 16)])
    t_ae = time.perf_counter() - t0
    mse = np.mean((trip.astype(np.float64) - images) ** 2)
    psnr = 10 * np.log10(255.0 ** 2 / mse)

    ext = fid.InceptionFeatures(None)
    f_real = fid.reference_features(images, ext)[0]  # cached as evaluate caches its real reference
    f_trip = ext(trip)
    p = np.random.default_rng(args.seed).permutation(len(images))
    a, b = p[: len(p) // 2], p[len(p) // 2:]
    res = {
        "real": str(args.real), "autoencoder": args.autoencoder, "resolution": args.resolution, "n": len(images),
        "roundtrip_psnr_db": float(psnr), "roundtrip_seconds": round(t_ae, 1),
        "roundtrip_vs_train": fid.fid_kid(f_trip, f_real),
        "halves_real": fid.fid_kid(f_real[a], f_real[b]),
        "halves_roundtrip": fid.fid_kid(f_trip[a], f_real[b]),
    }
    for k in ("roundtrip_vs_train", "halves_real", "halves_roundtrip"):
        res[k].pop("warnings", None)
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if args.json:
        open(args.json, "w").write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
