"""Helpers of benchmarks/gpu_check.sh, each writing one JSON file (all run on the CPU too, for testing):

    python benchmarks/gpu_check_helpers.py probe OUT.json
        what is importable (torch + CUDA, onnxruntime + its providers, tensorrt, pytest, ...), the GPU, the CPU
    python benchmarks/gpu_check_helpers.py generate OUT.json -- GENERATE_ARGS...
        runs `fastsynth generate GENERATE_ARGS` in this process: wall seconds, its summary, peak memory, environment
    python benchmarks/gpu_check_helpers.py compare OUT.json DIR_A DIR_B
        row-by-row equality of two generated datasets over the rows both hold (index, seed, image and mask bytes)
    python benchmarks/gpu_check_helpers.py pytest OUT.json -- PYTEST_ARGS...
        runs pytest in this process: passed / failed / skipped counts, and each failure's name and message
    python benchmarks/gpu_check_helpers.py summary RESULTS_DIR
        RESULTS_DIR/summary.json: every step's status and the headline numbers found in the step files
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _write(path: str | os.PathLike, obj) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, p)


def probe(out: str) -> int:
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    def v(p):
        try:
            return version(p)
        except PackageNotFoundError:
            return None

    rep: dict = {"python": sys.version.split()[0], "executable": sys.executable, "modules": {}, "dists": {}}
    for dist in ("torch", "fastsynth", "diffusers", "accelerate", "onnx", "onnxscript", "onnxruntime",
                 "onnxruntime-gpu", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "pytest", "datasets"):
        rep["dists"][dist] = v(dist)
    for mod in ("torch", "diffusers", "accelerate", "datasets", "onnx", "onnxscript", "onnxruntime", "tensorrt",
                "pytest", "fastsynth"):
        try:
            m = importlib.import_module(mod)
            rep["modules"][mod] = {"ok": True, "version": getattr(m, "__version__", None),
                                   "file": getattr(m, "__file__", None)}
        except Exception as exc:  # noqa: BLE001 - recorded
            rep["modules"][mod] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        import torch

        rep["torch_cuda"] = {"available": torch.cuda.is_available(), "cuda": torch.version.cuda,
                             "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                             "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}
        if torch.cuda.is_available():
            rep["torch_cuda"]["capability"] = list(torch.cuda.get_device_capability(0))
    except Exception as exc:  # noqa: BLE001
        rep["torch_cuda"] = {"error": str(exc)}
    try:
        import onnxruntime as ort

        rep["onnxruntime_providers"] = ort.get_available_providers()
        rep["onnxruntime_device"] = ort.get_device()
    except Exception as exc:  # noqa: BLE001
        rep["onnxruntime_providers"] = None
        rep["onnxruntime_error"] = str(exc)
    try:
        from fastsynth.utils import cpu_info

        rep["cpu"] = cpu_info()
    except Exception as exc:  # noqa: BLE001
        rep["cpu"] = {"error": str(exc)}
    rep["gpu_ready"] = bool(rep.get("torch_cuda", {}).get("available"))
    rep["ort_cuda_ready"] = "CUDAExecutionProvider" in (rep.get("onnxruntime_providers") or [])
    rep["ort_tensorrt_ready"] = ("TensorrtExecutionProvider" in (rep.get("onnxruntime_providers") or [])
                                 and rep["modules"]["tensorrt"]["ok"])
    _write(out, rep)
    print(json.dumps({k: rep[k] for k in ("gpu_ready", "ort_cuda_ready", "ort_tensorrt_ready")}))
    return 0


def generate(out: str, args: list[str]) -> int:
    import resource

    import torch

    from fastsynth.bench import environment
    from fastsynth.cli import main

    t0 = time.perf_counter()
    rc = main(["generate", *args])
    wall = time.perf_counter() - t0
    rep = {"command": "fastsynth generate " + " ".join(args), "rc": rc, "wall_s": round(wall, 2),
           "rank": os.environ.get("RANK"), "world_size": os.environ.get("WORLD_SIZE"),
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda":
        rep["peak_gpu_memory_bytes"] = torch.cuda.max_memory_allocated()
    if "--out" in args:
        m = Path(args[args.index("--out") + 1]) / "fastsynth.json"
        if m.exists():
            man = json.loads(m.read_text())
            rep["manifest"] = {k: man.get(k) for k in ("n", "complete", "backend", "device", "precision", "sampler",
                                                       "steps", "resolution", "shard_size")}
            if rc == 0 and man.get("n"):
                rep["pairs_per_s_wall"] = round(man["n"] / wall, 1) if os.environ.get("WORLD_SIZE", "1") == "1" \
                    else None
    rep["environment"] = environment(dev)
    _write(out, rep)
    return rc


def _rows(d: Path) -> dict:
    import pyarrow.parquet as pq

    rows = {}
    for f in sorted((d / "data").glob("train-*.parquet")):
        t = pq.read_table(f).to_pydict()
        for i, idx in enumerate(t["index"]):
            rows[int(idx)] = (int(t["seed"][i]), json.dumps(t["image"][i], default=lambda b: b.hex()),
                              json.dumps(t["mask"][i], default=lambda b: b.hex()))
    return rows


def compare(out: str, a: str, b: str) -> int:
    ra, rb = _rows(Path(a)), _rows(Path(b))
    common = sorted(set(ra) & set(rb))
    diff = [i for i in common if ra[i] != rb[i]]
    rep = {"a": a, "b": b, "rows_a": len(ra), "rows_b": len(rb), "rows_compared": len(common),
           "rows_different": len(diff), "first_different": diff[:10],
           "identical": bool(common) and not diff}
    _write(out, rep)
    print(json.dumps({k: rep[k] for k in ("rows_compared", "rows_different", "identical")}))
    return 0 if rep["identical"] else 1


def run_pytest(out: str, args: list[str]) -> int:
    import tempfile
    import xml.etree.ElementTree as ET

    import pytest

    xml = Path(tempfile.mkdtemp()) / "junit.xml"
    t0 = time.perf_counter()
    rc = int(pytest.main([*args, f"--junitxml={xml}"]))
    rep = {"command": "pytest " + " ".join(args), "rc": rc, "wall_s": round(time.perf_counter() - t0, 2),
           "passed": 0, "failed": 0, "skipped": 0, "errors": 0, "failures": [], "skips": []}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                rep["failed" if bad.tag == "failure" else "errors"] += 1
                rep["failures"].append({"test": name, "message": (bad.get("message") or "")[:2000]})
            elif case.find("skipped") is not None:
                rep["skipped"] += 1
                rep["skips"].append({"test": name, "reason": (case.find("skipped").get("message") or "")[:300]})
            else:
                rep["passed"] += 1
    _write(out, rep)
    return rc


def summary(results_dir: str) -> int:
    d = Path(results_dir)
    steps = {}
    for f in sorted(d.glob("step-*.json")):
        s = json.loads(f.read_text())
        steps[s["name"]] = {k: s.get(k) for k in ("status", "rc", "seconds", "timeout_s")}
    head: dict = {}

    def load(name):
        p = d / name
        try:
            return json.loads(p.read_text()) if p.exists() else None
        except json.JSONDecodeError:
            return None

    for name in ("parity.json", "parity_compile.json"):
        par = load(name)
        if par:
            head.setdefault("parity", {}).update({f"{r['backend']}/{r['precision']}": str(r.get("status")) + (
                f" (max rel {r['max_rel']:.1e})" if r.get("max_rel") is not None else "") for r in par["rows"]})
    for name in ("bench_64.json", "bench_256_eager.json", "bench_256_tensorrt.json"):
        b = load(name)
        if b:
            head[name] = [{k: r.get(k) for k in ("scenario", "backend", "batch_size", "ms_per_eval", "evals_per_s",
                                                  "pairs_per_s", "fraction_of_peak", "build_s", "skipped")}
                          for r in b.get("records", [])]
    for name in ("generate_10k.json", "generate_2proc_rank0.json", "generate_2proc_rank1.json",
                 "generate_2proc_compare.json", "pytest_gpu.json", "probe_after.json"):
        g = load(name)
        if g and name == "probe_after.json":
            head[name] = {k: g.get(k) for k in ("gpu_ready", "ort_cuda_ready", "ort_tensorrt_ready", "torch_cuda",
                                                "onnxruntime_providers")}
        elif g:
            head[name] = {k: g.get(k) for k in ("rc", "wall_s", "pairs_per_s_wall", "manifest", "peak_rss_bytes",
                                                "peak_gpu_memory_bytes", "identical", "rows_compared",
                                                "rows_different", "passed", "failed", "skipped", "errors")
                          if k in g}
    _write(d / "summary.json", {"steps": steps, "results": head})
    print(json.dumps(steps, indent=1))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "probe":
        return probe(argv[1])
    if len(argv) >= 2 and argv[0] == "generate":
        rest = argv[2:]
        return generate(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
    if len(argv) >= 2 and argv[0] == "pytest":
        rest = argv[2:]
        return run_pytest(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
    if len(argv) == 4 and argv[0] == "compare":
        return compare(*argv[1:])
    if len(argv) == 2 and argv[0] == "summary":
        return summary(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
