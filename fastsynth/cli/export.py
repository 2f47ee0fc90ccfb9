"""fastsynth export: a denoiser or segmenter as an ONNX file (or a TensorRT engine cache) plus a parity report."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX / TensorRT with a parity report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None,
                   help="denoiser model or run folder (default: bundled), or a segmenter folder saved by "
                        "fastsynth evaluate --downstream")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx", help="artifact kind")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="device for the parity check (tensorrt needs cuda)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensorrt precision")
    p.add_argument("--batch-size", type=int, default=8, help="batch of the parity check / TensorRT profile")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import FastsynthError
    from ..export import export_artifact

    if args.batch_size < 1:
        raise FastsynthError(f"--batch-size {args.batch_size}: must be at least 1")
    report = export_artifact(args.model, args.format, args.out, device=args.device, precision=args.precision,
                             batch_size=args.batch_size)
    par = report["parity"]
    print(f"wrote {report['artifact']} ({report['format']}); parity vs eager on {par['n_inputs']} random inputs: "
          f"max abs {par['max_abs']:.2e}, max rel {par['max_rel']:.2e} -> {'OK' if par['ok'] else 'FAILED'}")
    return 0 if par["ok"] else 1
