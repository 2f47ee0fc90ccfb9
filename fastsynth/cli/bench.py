"""fastsynth bench: throughput per backend and batch size, with baselines side by side."""

from __future__ import annotations

import argparse


def _ints(s: str) -> tuple[int, ...]:
    try:
        v = tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return v


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from ..config import PRESETS
    from ..runtime import BACKENDS, PRECISIONS
    from ..sampling import SAMPLER_NAMES

    p = sub.add_parser("bench", help="measure generation throughput", formatter_class=HelpFormatter,
                       description="Times network evaluations per backend and batch size (warm-up excluded, "
                                   "median of repeats), one end-to-end batch, and two baselines in the same run.")
    p.add_argument("--model", default=None, help="model or run folder (default: bundled)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="instead of --model: a random-weight network of this preset (speed only; e.g. paper at "
                        "256x256 on a GPU), built once and cached")
    p.add_argument("--resolution", type=int, default=None, help="resolution of the --preset network (default 256)")
    p.add_argument("--backends", default="eager,onnx",
                   help=f"comma-separated, from {','.join(BACKENDS)}; each may name its precision, e.g. "
                        "onnx:int8 (timed side by side)")
    p.add_argument("--batch-sizes", type=_ints, default=(32,), help="comma-separated batch sizes")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                   help="sampler of the end-to-end run (default: the model's own, else unipc)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the sampler's default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="network precision")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    p.add_argument("--no-baselines", action="store_true", help="skip the two baselines")
    p.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end batch")
    p.add_argument("--choose", action="store_true",
                   help="store the fastest backend per precision (at the largest batch size) as this machine's "
                        "choice for --backend auto (CPU; int8 only where its accuracy gate accepts it)")
    p.add_argument("--json", default=None, help="write the records to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..bench import parse_backend, run_bench, write_json
    from ..errors import FastsynthError

    if args.repeats < 1:
        raise FastsynthError(f"--repeats {args.repeats}: must be at least 1")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    for b in backends:
        parse_backend(b, args.precision)  # a clear error for an unknown name before anything runs
    res = run_bench(args.model, backends, args.batch_sizes, args.steps, args.sampler, args.device,
                    args.precision, args.repeats, baselines=not args.no_baselines, preset=args.preset,
                    resolution=args.resolution, end_to_end=not args.no_end_to_end, choose=args.choose)
    if args.json:
        write_json(res, args.json)
        print(f"wrote {args.json}")
    return 0
