"""Reference points for the int8 gate's thresholds, through the gate's own measurement (``gate_figures``: same
fixed check set, same seeds, fp32 ONNX Runtime as the reference):

- bf16 eager: the lower precision fastsynth already allows (on GPUs);
- int8 with every convolution but the first and last quantised (the recipe without its SQNR rule);
- the accepted recipe (``fastsynth.runtime.int8.RECIPE``, from the cache).

and the per-evaluation time of the two int8 files next to fp32, side by side (batch 64, ``--repeats`` rounds).

    OMP_NUM_THREADS=1 python benchmarks/int8_gate_references.py --json benchmarks/results/int8_gate_references_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from fastsynth.bench import environment, paired_ratio, side_by_side
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.models.denoiser import WEIGHTS_NAME
    from fastsynth.runtime.gates import calibration_inputs, ensure_int8, gate_figures, verdict
    from fastsynth.runtime import make_model_fn
    from fastsynth.runtime.int8 import RECIPE, quantize_denoiser
    from fastsynth.runtime.onnx import cached_onnx, onnx_model_fn
    from fastsynth.utils import file_sha256

    cpu = torch.device("cpu")
    mdir = resolve_model_dir(args.model)
    sha = file_sha256(mdir / WEIGHTS_NAME)
    net, meta = load_model(mdir)
    fp32_path = cached_onnx(net, sha)
    ref = onnx_model_fn(fp32_path, cpu)
    accepted_path, accepted = ensure_int8(net, meta, sha, "onnx")
    rows = {"int8 accepted recipe": {"recipe": RECIPE, "figures": accepted["figures"]}}

    t0 = time.perf_counter()
    all_recipe = {**RECIPE, "fp32_convs": {"first_and_last": True, "min_sqnr_db": -1e9}}
    scratch = Path(tempfile.mkdtemp(prefix="fastsynth-int8-ref-"))
    all_path = scratch / "all_convs.onnx"
    info = quantize_denoiser(fp32_path, all_path, calibration_inputs(ref, net, meta), all_recipe)
    rows["int8 all convolutions but first and last"] = {
        "recipe": all_recipe, "quantised": info["quantised"],
        "figures": gate_figures(ref, onnx_model_fn(all_path, cpu), net, meta)}
    print(f"all convolutions: {time.perf_counter() - t0:.0f} s", flush=True)
    t0 = time.perf_counter()
    bf16 = make_model_fn(load_model(mdir)[0], "eager", cpu, "bf16")
    rows["bf16 eager"] = {"figures": gate_figures(ref, bf16, net, meta)}
    print(f"bf16: {time.perf_counter() - t0:.0f} s", flush=True)
    for name, r in rows.items():
        r["verdict"] = verdict(r["figures"])
        f = r["figures"]
        print(f"{name}: output relative RMS {f['output']['rel_rms']:.4f}, mean |pixel diff| "
              f"{f['sampler']['mean_abs_pixel']:.2f} levels, mean mask IoU {f['sampler']['mean_mask_iou']:.3f} "
              f"(min {f['sampler']['min_mask_iou']:.3f}); gate {'passes' if r['verdict']['ok'] else 'fails'}")

    b = 64
    g = torch.Generator().manual_seed(0)
    x, t, c = torch.randn(b, 4, 64, 64, generator=g), torch.full((b,), 500), torch.zeros(b, 8, 64, 64)
    fns = {"onnx fp32": ref, "onnx int8 accepted recipe": onnx_model_fn(accepted_path, cpu),
           "onnx int8 all convolutions": onnx_model_fn(all_path, cpu)}
    for fn in fns.values():
        fn(x, t, c)
    times = side_by_side([(lambda f=fn: f(x, t, c)) for fn in fns.values()], cpu, args.repeats)
    timing = {}
    for (name, _), ts in zip(fns.items(), times):
        timing[name] = {"ms_per_eval": 1000 * statistics.median(ts), "ratio_to_fp32": paired_ratio(ts, times[0]),
                        "times_s": ts}
        print(f"{name}: {timing[name]['ms_per_eval']:.0f} ms per evaluation, ratio {timing[name]['ratio_to_fp32']:.3f}")
    res = {"command": " ".join(["python", *sys.argv]), "environment": environment(cpu), "model_sha256": sha,
           "batch_size": b, "repeats": args.repeats, "gate": rows, "per_eval_side_by_side": timing}
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
