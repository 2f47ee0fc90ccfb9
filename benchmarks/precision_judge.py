"""The data-level half of the int8 and bf16 gates: are the label agreement and the KID of an int8 (or bf16) dataset
indistinguishable from fp32's?

Three datasets of ``--n`` pairs with generate's defaults: fp32 with seed 0 (A), fp32 with seed 1 (B: the
seed-to-seed yardstick) and the reduced precision with seed 0 (C), each evaluated with ``--metrics fid,agreement``
against the model's training split (KID vs the training images; label agreement: Dice of the cached real-trained
segmenters, 3 seeds, against the generated masks). C is indistinguishable when

- |agreement(C) - agreement(A)| <= max(the segmenter-seed std of A and of C, |agreement(B) - agreement(A)|), and
- |KID(C) - KID(A)| <= max(KID std of A and of C, |KID(B) - KID(A)|)

(with at most 1000 images KID has one subset and a std of 0: the fp32 seed-to-seed difference is the yardstick).
``--record`` stores the verdict next to the gate's record, where ``--precision auto`` looks for it.

    python benchmarks/precision_judge.py --model bundled --precision int8 --backend onnx --n 900 \\
        --out /tmp/int8-judge --json benchmarks/results/int8_judge_cpu.json --record
    python benchmarks/precision_judge.py --model bundled --precision bf16 --backend openvino --n 900 \\
        --out /tmp/bf16-judge --json benchmarks/results/bf16_judge_cpu.json --record --ship

About 3 x 1 min of generation and 3 evaluations on 1 thread for n = 900 with the bundled model (the real-trained
segmenters are trained once and cached).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def judge(a: dict, b: dict, c: dict, name: str = "int8") -> dict:
    """The verdict from the three evaluations' metrics (A fp32 seed 0, B fp32 seed 1, C ``name`` seed 0)."""
    out: dict = {"checks": {}}
    if all("agreement" in m for m in (a, b, c)):
        ag = [m["agreement"]["dice"] for m in (a, b, c)]
        tol = max(a["agreement"]["dice_seed_std"], c["agreement"]["dice_seed_std"], abs(ag[1] - ag[0]))
        out["agreement"] = {"fp32": ag[0], "fp32_other_seed": ag[1], name: ag[2], "difference": ag[2] - ag[0],
                            "tolerance": tol}
        out["checks"]["agreement"] = abs(ag[2] - ag[0]) <= tol
    if all("fid_kid" in m for m in (a, b, c)):
        k = [m["fid_kid"]["kid"] for m in (a, b, c)]
        tol = max(a["fid_kid"]["kid_std"], c["fid_kid"]["kid_std"], abs(k[1] - k[0]))
        out["kid"] = {"fp32": k[0], "fp32_other_seed": k[1], name: k[2], "difference": k[2] - k[0],
                      "tolerance": tol, "fid": [m["fid_kid"]["fid"] for m in (a, b, c)]}
        out["checks"]["kid"] = abs(k[2] - k[0]) <= tol
    out["ok"] = bool(out["checks"]) and all(out["checks"].values()) and set(out["checks"]) == {"agreement", "kid"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--precision", default="int8", choices=["int8", "bf16"], help="the reduced precision to judge")
    ap.add_argument("--backend", default="onnx", choices=["onnx", "openvino"],
                    help="its runtime (bf16: openvino)")
    ap.add_argument("--n", type=int, default=900)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", required=True, help="folder for the three datasets")
    ap.add_argument("--metrics", default="fid,agreement")
    ap.add_argument("--json", default=None)
    ap.add_argument("--record", action="store_true", help="store the verdict next to the gate's record")
    ap.add_argument("--ship", action="store_true",
                    help="bf16: also copy the gate's records (output and data level) into the model's folder "
                         "(gates/), so a fresh machine with the same OpenVINO version need not measure them")
    args = ap.parse_args()

    from fastsynth.config import GenerateConfig
    from fastsynth.metrics.suite import evaluate
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.pipeline import generate
    from fastsynth.utils import cpu_info, file_sha256

    mdir = resolve_model_dir(args.model)
    t0 = time.perf_counter()
    runs = {"fp32_seed0": ("onnx", "fp32", 0), "fp32_seed1": ("onnx", "fp32", 1),
            f"{args.precision}_seed0": (args.backend, args.precision, 0)}
    metrics, summaries = {}, {}
    for name, (backend, precision, seed) in runs.items():
        out = Path(args.out) / name
        cfg = GenerateConfig(n=args.n, seed=seed, batch_size=args.batch_size, backend=backend, precision=precision)
        summaries[name] = generate(cfg, out, model=args.model, progress=False)
        print(f"{name}: {summaries[name]['pairs']} pairs in {summaries[name]['seconds']} s", flush=True)
        metrics[name] = evaluate(out, mdir, metrics=args.metrics, fid_reference="train", out_dir=out / "eval",
                                 log=lambda s: print(s, flush=True))
    verdict = judge(metrics["fp32_seed0"], metrics["fp32_seed1"], metrics[f"{args.precision}_seed0"], args.precision)
    net, _ = load_model(mdir)
    sha = file_sha256(mdir / WEIGHTS_NAME)
    res = {"command": " ".join(["python", *sys.argv]), "model_sha256": sha, "backend": args.backend,
           "precision": args.precision, "cpu": cpu_info(),
           "n": args.n, "metrics": args.metrics, "generation": summaries, "verdict": verdict,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(verdict, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if args.record:
        from fastsynth.quantize import record_data_level

        p = record_data_level(sha, net.config.resolution, args.backend,
                              {**verdict, "n": args.n, "command": res["command"]}, args.precision)
        print(f"data-level verdict recorded in {p}")
        if args.ship and args.precision == "bf16":
            from fastsynth.quantize import ship_gate

            print(f"gate records shipped in {ship_gate(mdir, sha, args.backend, 'bf16')}")


if __name__ == "__main__":
    main()
