"""Thin typed commands. One place (``main``) formats user errors: a message, no traceback, non-zero exit."""

from __future__ import annotations

import argparse
import sys

from ..errors import FastsynthError

COMMANDS = ("train", "distill", "generate", "info", "export", "bench", "evaluate", "filter", "train-filter", "publish")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import bench, distill, evaluate, export, filter, generate, info, publish, train, train_filter
    from .common import HelpFormatter

    p = argparse.ArgumentParser(
        prog="fastsynth",
        description="Train diffusion models on labeled images and generate synthetic image+mask datasets.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"fastsynth {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in (train, distill, generate, info, export, bench, evaluate, filter, train_filter, publish):
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FastsynthError as exc:
        print(f"fastsynth {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path the user gave cannot be read or written
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"fastsynth {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastsynth {args.command}: interrupted", file=sys.stderr)
        return 130
