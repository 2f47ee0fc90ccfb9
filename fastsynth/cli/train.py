"""fastsynth train: train a joint image+mask denoiser on a folder of pairs."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from .common import add_run_options
    from ..config import AUTOENCODER_NAMES, LR_SCHEDULES, MASK_REPRS, PRESETS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a model on image/mask pairs",
                       formatter_class=HelpFormatter,
                       description="Train the joint RGB+mask denoiser. Several GPUs: "
                                   "accelerate launch -m fastsynth train ...")
    p.add_argument("--data", required=True, help="folder with images/ and masks/ (same stems), "
                   "a Hugging Face dataset on disk with image and mask columns, NIfTI volumes (a Decathlon "
                   "folder: dataset.json + imagesTr/ + labelsTr/; or images/ + labels/ with matching names), or a "
                   "folder of DICOM series with DICOM-SEG files (each SEG and the series it refers to: one volume)")
    p.add_argument("--out", required=True, help="run folder (config, split, checkpoints, model/)")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help="training resolution (square; with --latent a multiple of 8, at least 64)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"network size (default: {d.preset}; with --latent: latent)")
    p.add_argument("--latent", choices=AUTOENCODER_NAMES, default=None,
                   help="latent diffusion on this bundled autoencoder's grid (resolution / 8): the training images "
                        "are encoded once into a cache; default: pixel diffusion")
    p.add_argument("--mask-repr", choices=MASK_REPRS, default=d.mask_repr,
                   help="with --latent: the mask in the latent grid (pool: average-pooled to the grid; s2d: at 4x "
                        "the grid, folded into 16 channels)")
    p.add_argument("--steps", type=int, default=d.steps, help="total optimisation steps")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="after the warm-up: constant, or cosine down to 0 at --steps (a cool-down)")
    p.add_argument("--oversample-small", type=float, default=d.oversample_small, metavar="F",
                   help="draw the pairs whose mask area is in the smallest quarter of the training masks F times as "
                        "often (1: uniform; for a model that under-draws small structures)")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA decay of the saved model")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, help="held-out fraction (by stem)")
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the train/test split")
    p.add_argument("--seed", type=int, default=d.seed, help="training seed")
    p.add_argument("--loss-weighting", choices=("v", "min-snr"), default=d.loss_weighting,
                   help="v: plain MSE on v; min-snr: Min-SNR-gamma weighting (Hang et al. 2023)")
    p.add_argument("--min-snr-gamma", type=float, default=d.min_snr_gamma, help="gamma of --loss-weighting min-snr")
    p.add_argument("--init-from", default=d.init_from, metavar="MODEL",
                   help="warm start: initialise from a saved model folder, run folder or 'bundled' (same preset "
                        "and resolution); recorded in the model card")
    p.add_argument("--classes", default="", metavar="NAMES",
                   help="label class names, background first (e.g. background,blood-pool,myocardium): the masks are "
                        "label maps with values 0..K-1; default: binary masks, or K found from the label values")
    p.add_argument("--slice-axis", type=int, choices=(0, 1, 2), default=d.slice_axis,
                   help="volumes (NIfTI or DICOM): cut 2D slices along "
                        "this axis of the RAS+ volume (2 = axial)")
    p.add_argument("--empty-fraction", type=float, default=d.empty_fraction,
                   help="volumes: empty slices kept, as a fraction of the slices with foreground")
    p.add_argument("--group-by", default=d.group_by, metavar="RULE",
                   help="keep related images on one side of the split: auto (the stem's part before the first - "
                        "or _, when that groups stems), none, or a regex whose first group names a stem's group")
    add_run_options(p, d)
    p.set_defaults(func=run)


def run(args) -> int:
    from .common import invoked_command
    from ..config import TrainConfig
    from ..data.modality import parse_classes
    from ..errors import FastsynthError
    from ..training import train

    if args.steps < 1 or args.batch_size < 1:
        raise FastsynthError("--steps and --batch-size must be at least 1")
    preset = args.preset or ("latent" if args.latent else TrainConfig.preset)
    cfg = TrainConfig(data=args.data, out=args.out, preset=preset, resolution=args.resolution,
                      latent=args.latent or "", mask_repr=args.mask_repr,
                      steps=args.steps, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                      test_fraction=args.test_fraction, split_seed=args.split_seed, seed=args.seed,
                      mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every,
                      skip_bad=args.skip_bad, loss_weighting=args.loss_weighting, lr_schedule=args.lr_schedule,
                      min_snr_gamma=args.min_snr_gamma, init_from=args.init_from,
                      classes=parse_classes(args.classes) or (), group_by=args.group_by,
                      slice_axis=args.slice_axis, empty_fraction=args.empty_fraction,
                      oversample_small=args.oversample_small)
    command = invoked_command("train")
    train(cfg, resume=args.resume, time_limit_min=args.time_limit, command=command,
          progress=not args.no_progress)
    return 0
