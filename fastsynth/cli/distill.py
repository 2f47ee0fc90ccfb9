"""fastsynth distill: progressive distillation of a model into a few-step student."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from .common import add_run_options
    from ..config import DistillConfig

    d = DistillConfig()
    p = sub.add_parser(
        "distill", help="distill a model into a few-step student (progressive distillation)",
        formatter_class=HelpFormatter,
        description="Progressive distillation (Salimans & Ho 2022): each round trains a student to do in one "
                    "DDIM step what its teacher does in two, halving the steps from --teacher-steps down to "
                    "--student-steps. The student samples with its own grid by default: "
                    "fastsynth generate --model OUT.")
    p.add_argument("--model", default="bundled", help="teacher: model folder, training run, or bundled")
    p.add_argument("--out", required=True, help="run folder (a model folder per round, model/ = final student)")
    p.add_argument("--data", default="", help="training pairs (default: the teacher's training data, from its "
                                              "metadata; its held-out split is never used)")
    p.add_argument("--teacher-steps", type=int, default=d.teacher_steps, help="DDIM steps of the first teacher")
    p.add_argument("--student-steps", type=int, default=d.student_steps,
                   help="steps of the final student (teacher steps / a power of two)")
    p.add_argument("--steps-per-round", type=int, default=d.steps_per_round, help="optimisation steps per round")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training pairs per step")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (constant after warm-up)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every step's batch, noise and timesteps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_run_options(p, d)
    p.set_defaults(func=run)


def run(args) -> int:
    from .common import invoked_command
    from ..config import DistillConfig
    from ..training import distill

    cfg = DistillConfig(teacher=args.model, out=args.out, data=args.data, teacher_steps=args.teacher_steps,
                        student_steps=args.student_steps, steps_per_round=args.steps_per_round,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every,
                        skip_bad=args.skip_bad)
    command = invoked_command("distill")
    distill(cfg, resume=args.resume, time_limit_min=args.time_limit, command=command,
            progress=not args.no_progress, device=args.device)
    return 0
