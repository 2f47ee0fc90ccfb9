"""What the commands share: the recorded command line and the options of long training-like commands."""

from __future__ import annotations

import argparse
import sys


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default said once: added as "(default: X)" only where the help text does not already say it,
    and never for options without one (None, a flag that is off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return super()._get_help_string(action)


def invoked_command(name: str) -> str:
    """The shell command that started this process (recorded in cards and manifests), or "" when the command
    ``name`` was called from Python rather than from the shell."""
    import shlex

    return "fastsynth " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == [name] else ""


def add_run_options(p, d) -> None:
    """Options every long training-like command shares (train, distill); ``d`` holds the defaults."""
    p.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default=d.mixed_precision,
                   help="auto: bf16/fp16 on GPU; on CPU bf16 autocast where the CPU has AVX512_BF16 or AMX, "
                        "else fp32")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                   help="stop cleanly (with a checkpoint) after this many minutes")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip bad pairs instead of stopping (train lists them in RUN/skipped.json)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
