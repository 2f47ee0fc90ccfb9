"""fastsynth train-filter: the label-agreement filter of a latent model, a segmenter on its latent grid."""

from __future__ import annotations


def add_parser(sub) -> None:
    from ..runtime import BACKENDS
    from .common import HelpFormatter

    p = sub.add_parser("train-filter", formatter_class=HelpFormatter,
                       help="train a latent model's agreement filter on its latent grid (scores before decoding)",
                       description="Train a segmenter on a latent model's training latents (its training split, "
                                   "encoded once and cached), to score candidate pairs before the decoder runs: "
                                   "generate --keep-agreeing DIR then decodes only the kept pairs.")
    p.add_argument("--model", required=True, help="a latent model: folder, run folder or bundled name")
    p.add_argument("--out", required=True, help="the segmenter folder to write")
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps (batch --batch-size)")
    p.add_argument("--batch-size", type=int, default=32, help="latents per step")
    p.add_argument("--resolution", type=int, default=128, help="where agreement is scored (logits upsampled)")
    p.add_argument("--distill", type=int, default=0, metavar="N",
                   help="teach it on N of the model's own unfiltered candidates (their latents before decoding), "
                        "labelled by an image filter segmenting the decoded images, instead of on the real pairs: "
                        "it then keeps what the image filter keeps (a few thousand; --resolution is the teacher's). "
                        "The candidates wait in OUT.candidates until the filter is written: an interrupted run "
                        "goes on from them when run again")
    p.add_argument("--teacher", default=None,
                   help="with --distill: the image segmenter to learn from (default: the model's shipped filter)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="with --distill: the runtime that generates the candidates (as generate --backend)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed, and the candidates' seed with --distill (deterministic per seed)")
    p.add_argument("--fp16", action="store_true", help="store the weights in fp16 (to ship with a model)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import FastsynthError

    if args.steps < 1 or args.batch_size < 1 or args.resolution < 8:
        raise FastsynthError("--steps and --batch-size must be at least 1, --resolution at least 8")
    if args.distill < 0 or args.distill == 1:
        raise FastsynthError(f"--distill {args.distill}: a number of candidates, at least 2 (0: real pairs)")
    if args.teacher and not args.distill:
        raise FastsynthError("--teacher is the image filter of --distill N")
    import torch

    from ..training.latent_filter import train_latent_filter

    distilled = work = None
    if args.distill:  # the model's own candidates, labelled by its image filter (kept in OUT.candidates till done)
        from pathlib import Path

        from ..pipeline import distill_candidates

        work = Path(args.out).with_name(Path(args.out).name + ".candidates")
        distilled = distill_candidates(args.model, args.distill, work, teacher=args.teacher, seed=args.seed,
                                       progress=not args.no_progress, backend=args.backend)
    out = train_latent_filter(args.model, args.out, steps=args.steps, batch_size=args.batch_size,
                              resolution=args.resolution, seed=args.seed, progress=not args.no_progress,
                              dtype=torch.float16 if args.fp16 else None, distilled=distilled)
    if work is not None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(f"latent filter written to {out}: generate --keep-agreeing {out} --min-agreement D")
    return 0
