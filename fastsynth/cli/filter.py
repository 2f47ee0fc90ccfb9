"""fastsynth filter: keep pairs whose mask agrees with a segmenter trained on real data."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from ..runtime import SEGMENTER_BACKENDS

    p = sub.add_parser("filter", help="keep pairs whose mask agrees with a real-data segmenter",
                       formatter_class=HelpFormatter)
    p.add_argument("synth_dir", metavar="SYNTH_DIR", help="a dataset written by fastsynth generate")
    p.add_argument("--segmenter", required=True, help="a segmenter folder (saved by fastsynth evaluate --downstream)")
    p.add_argument("--min-dice", type=float, default=None,
                   help="keep pairs with Dice(mask, prediction) >= this (scored at the segmenter's resolution: pairs "
                        "of another size are resized as evaluate --seg-resolution resizes them); default 0.5 unless "
                        "--keep-fraction is given")
    p.add_argument("--keep-fraction", type=float, default=None,
                   help="instead of a threshold, keep this fraction of the pairs, those that agree best (e.g. 0.5: "
                        "generate twice what you need and keep the better half)")
    p.add_argument("--out", required=True, help="output dataset folder (an `agreement` column is added)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--backend", choices=SEGMENTER_BACKENDS, default="auto",
                   help="runtime of the segmenter (auto: ONNX Runtime on CPU when installed, else eager)")
    p.add_argument("--batch-size", type=int, default=64, help="images per segmenter call")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..metrics.filter import filter_dataset

    from ..errors import FastsynthError

    if args.batch_size < 1:
        raise FastsynthError(f"--batch-size {args.batch_size}: must be at least 1")
    min_dice = 0.5 if args.min_dice is None and args.keep_fraction is None else args.min_dice
    info = filter_dataset(args.synth_dir, args.segmenter, args.out, min_dice, args.device,
                          batch_size=args.batch_size, progress=not args.no_progress, backend=args.backend,
                          keep_fraction=args.keep_fraction)
    print(f"kept {info['kept']} of {info['total']} pairs (Dice >= {info['min_dice']:.4g}) in {args.out} "
          f"(scored at {info['scored_at']}x{info['scored_at']}, segmenter on {info['backend']})")
    return 0
