"""fastsynth export: a denoiser or segmenter as an ONNX file (or a TensorRT engine cache) plus a parity report."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from .common import HelpFormatter
    p = sub.add_parser("export", help="export a model to ONNX / TensorRT with a parity report",
                       formatter_class=HelpFormatter)
    p.add_argument("--model", default=None,
                   help="denoiser model or run folder (default: bundled), or a segmenter folder saved by "
                        "fastsynth evaluate --downstream")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx", help="artifact kind")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="device for the parity check (tensorrt needs cuda)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensorrt precision")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch of the parity check and, for tensorrt, of the engine (its static shape profile): "
                        "use generate's --batch-size (default: 64 for tensorrt, generate's default; 8 for onnx)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import FastsynthError
    from ..export import export_artifact

    from ..config import GenerateConfig

    batch = args.batch_size or (GenerateConfig().batch_size if args.format == "tensorrt" else 8)
    if batch < 1:
        raise FastsynthError(f"--batch-size {batch}: must be at least 1")
    report = export_artifact(args.model, args.format, args.out, device=args.device, precision=args.precision,
                             batch_size=batch)
    par = report["parity"]
    print(f"wrote {report['artifact']} ({report['format']}); parity vs eager on {par['n_inputs']} random inputs: "
          f"max abs {par['max_abs']:.2e}, max rel {par['max_rel']:.2e} -> {'OK' if par['ok'] else 'FAILED'}")
    if args.format == "tensorrt" and report["kind"] == "segmenter":
        note = "" if args.precision == "fp32" else " (filter runs fp32: export with --precision fp32 to warm its engine)"
        print(f"engine cache warmed for: fastsynth filter SYNTH --segmenter {args.model} --backend tensorrt "
              f"--batch-size {batch} --device {report['device']} ...{note}")
    elif args.format == "tensorrt":
        print(f"engine cache warmed for: fastsynth generate --backend tensorrt --precision {args.precision} "
              f"--batch-size {batch} --device {report['device']}" + (f" --model {args.model}" if args.model else ""))
    return 0 if par["ok"] else 1
