"""The data-level half of the int8 and bf16 gates: are the label agreement and the KID of an int8 (or bf16) dataset
indistinguishable from fp32's?

K fp32 datasets of ``--n`` pairs with generate's defaults and seeds 0..K-1 (``--fp32-seeds``, default 4: the
seed-to-seed yardstick) and one of the reduced precision with seed 0, each evaluated with ``--metrics
fid,agreement`` against the model's training split (KID vs the training images; label agreement: Dice of the
cached real-trained segmenters, 3 seeds, against the generated masks). The reduced precision is indistinguishable
when its agreement and its KID each lie inside the 95% prediction interval of the fp32 seeds
(``fastsynth.runtime.gates.data_level_verdict``). Each dataset's metrics are kept in ``<out>/<name>/metrics.json``, so
a rerun with more seeds only generates and evaluates the new ones. ``--record`` stores the verdict next to the
gate's record, where ``--precision auto`` looks for it.

    python benchmarks/precision_judge.py --model bundled --precision int8 --backend onnx --n 900 \\
        --out /tmp/int8-judge --json benchmarks/results/int8_judge_cpu.json --record
    python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \\
        --out /tmp/bf16-judge --json benchmarks/results/bf16_judge_cpu.json --record --ship

About 1 min of generation and 3 min of evaluation per dataset on 2 threads for n = 900 with the bundled model (the
real-trained segmenters are trained once and cached).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--precision", default="int8", choices=["int8", "bf16"], help="the reduced precision to judge")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "openvino"],
                    help="its runtime (bf16: openvino)")
    ap.add_argument("--n", type=int, default=900)
    ap.add_argument("--fp32-seeds", type=int, default=4, help="fp32 datasets (seeds 0..K-1) for the yardstick, >= 3")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", required=True, help="folder for the datasets (one subfolder each)")
    ap.add_argument("--metrics", default="fid,agreement")
    ap.add_argument("--seg-resolution", type=int, default=None,
                    help="resolution of the real-trained segmenters behind the agreement (default: the data's; "
                         "128 for 256^2 latent models on a CPU)")
    ap.add_argument("--keep-agreeing", default=None,
                    help="the label-agreement filter of generate (default: the model's own; 'none' judges the "
                         "unfiltered pairs, the stricter test of the numerics: the filter only selects among them)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--record", action="store_true", help="store the verdict next to the gate's record")
    ap.add_argument("--ship", action="store_true",
                    help="bf16: also copy the gate's records (output and data level) into the model's folder "
                         "(gates/), so a fresh machine with the same OpenVINO version need not measure them")
    args = ap.parse_args()

    from fastsynth.config import GenerateConfig
    from fastsynth.dataset.writer import dataset_identity, read_manifest
    from fastsynth.metrics.suite import evaluate
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.pipeline import generate
    from fastsynth.runtime.gates import data_level_verdict
    from fastsynth.utils import cpu_info, file_sha256, write_atomic

    mdir = resolve_model_dir(args.model)
    if args.fp32_seeds < 3:
        sys.exit("error: --fp32-seeds must be at least 3 (the verdict needs a seed-to-seed standard deviation)")
    sha = file_sha256(mdir / WEIGHTS_NAME)
    t0 = time.perf_counter()
    runs = {f"fp32_seed{i}": ("onnx", "fp32", i) for i in range(args.fp32_seeds)}
    runs[f"{args.precision}_seed0"] = (args.backend, args.precision, 0)
    metrics, summaries = {}, {}
    for name, (backend, precision, seed) in runs.items():
        out = Path(args.out) / name
        cfg = GenerateConfig(n=args.n, seed=seed, batch_size=args.batch_size, backend=backend, precision=precision,
                             keep_agreeing=args.keep_agreeing)
        summaries[name] = generate(cfg, out, model=args.model, progress=False)
        print(f"{name}: {summaries[name]['pairs']} pairs in {summaries[name]['seconds']} s", flush=True)
        ident = dataset_identity(read_manifest(out))
        kept = out / "metrics.json"
        old = json.loads(kept.read_text()) if kept.exists() else {}
        if old.get("identity") == ident and old.get("metrics_asked") == args.metrics and old.get("n") == args.n:
            metrics[name] = old["metrics"]
            print(f"{name}: metrics kept from {kept}", flush=True)
            continue
        metrics[name] = evaluate(out, mdir, metrics=args.metrics, fid_reference="train", out_dir=out / "eval",
                                 segmenter={"resolution": args.seg_resolution} if args.seg_resolution else None,
                                 log=lambda s: print(s, flush=True))
        write_atomic(kept, json.dumps({"identity": ident, "n": args.n, "metrics_asked": args.metrics,
                                       "metrics": metrics[name]}, default=str) + "\n")
    verdict = data_level_verdict([metrics[f"fp32_seed{i}"] for i in range(args.fp32_seeds)],
                                 metrics[f"{args.precision}_seed0"], args.precision)
    net, _ = load_model(mdir)
    res = {"command": " ".join(["python", *sys.argv]), "model_sha256": sha, "backend": args.backend,
           "precision": args.precision, "cpu": cpu_info(),
           "n": args.n, "fp32_seeds": args.fp32_seeds, "metrics": args.metrics, "generation": summaries,
           "verdict": verdict,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(verdict, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if args.record:
        from fastsynth.runtime.gates import record_data_level

        p = record_data_level(sha, net.config.resolution, args.backend,
                              {**verdict, "n": args.n, "keep_agreeing": args.keep_agreeing or "model default",
                               "command": res["command"]}, args.precision)
        print(f"data-level verdict recorded in {p}")
        if args.ship and args.precision == "bf16":
            from fastsynth.runtime.gates import ship_gate

            print(f"gate records shipped in {ship_gate(mdir, sha, args.backend, 'bf16')}")


if __name__ == "__main__":
    main()
