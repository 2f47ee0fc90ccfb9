"""The throughput benchmark's records: the CPU's instruction sets, random-weight preset models."""

import json
import platform
from pathlib import Path

import pytest

from fastsynth.errors import FastsynthError
from fastsynth.utils import CPU_FLAGS, cpu_info

SPR = """processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile amx_int8 avx_vnni
processor	: 1
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu
"""
AVX2_ONLY = """processor	: 0
model name	: AMD EPYC 7B12
flags		: fpu sse2 avx avx2 fma
"""
ARM = """processor	: 0
BogoMIPS	: 50.00
Features	: fp asimd evtstrm
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))


def test_cpu_info_reads_model_and_instruction_sets():
    spr = cpu_info(SPR)
    assert spr["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert set(spr["flags"]) == set(CPU_FLAGS) and all(spr["flags"].values())  # the first processor's line
    avx2 = cpu_info(AVX2_ONLY)
    assert avx2["model"] == "AMD EPYC 7B12"
    assert avx2["flags"]["avx2"] and not any(v for k, v in avx2["flags"].items() if k != "avx2")
    # no x86 flags line: unknown (None), never "absent"
    arm = cpu_info(ARM)
    assert arm["flags"] is None and arm["model"]
    for need in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_vnni"):
        assert need in CPU_FLAGS


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() not in ("x86_64", "AMD64"),
                    reason="needs Linux on x86")
def test_cpu_info_of_this_machine():
    info = cpu_info()
    assert isinstance(info["model"], str) and info["model"]
    assert info["flags"] is not None and set(info["flags"]) == set(CPU_FLAGS)


def test_bench_record_has_cpu_flags_and_random_preset_model(tmp_path):
    from fastsynth.bench import run_bench, write_json

    res = run_bench(backends=("eager",), batch_sizes=(2,), steps=1, device="cpu", repeats=1, baselines=False,
                    log=lambda *a: None, preset="tiny", resolution=16)
    env = res["environment"]
    assert env["cpu"]["model"] and "flags" in env["cpu"] and env["device"].startswith("CPU: ")
    assert res["random_weights"]["preset"] == "tiny" and res["random_weights"]["seed"] == 0
    per_eval = [r for r in res["records"] if r["scenario"] == "per_eval"]
    assert per_eval and per_eval[0]["resolution"] == 16 and per_eval[0]["evals_per_s"] > 0
    assert per_eval[0]["effective_precision"] == "fp32"
    write_json(res, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["environment"]["cpu"] == env["cpu"]
    # built once: the same folder (and weights hash) the second time
    again = run_bench(backends=("eager",), batch_sizes=(2,), steps=1, device="cpu", repeats=1, baselines=False,
                      log=lambda *a: None, preset="tiny", resolution=16)
    assert again["model"] == res["model"] and again["model_sha256"] == res["model_sha256"]


def test_bench_preset_errors(capsys):
    from fastsynth.bench import run_bench
    from fastsynth.cli import main

    with pytest.raises(FastsynthError, match="not both"):
        run_bench(model="bundled", preset="tiny", device="cpu")
    with pytest.raises(FastsynthError, match="needs --preset"):
        run_bench(resolution=64, device="cpu")
    assert main(["bench", "--preset", "paper", "--resolution", "100", "--device", "cpu"]) == 2
    assert "--resolution 100" in capsys.readouterr().err


def test_effective_precision_per_backend():
    import torch

    from fastsynth.bench import effective_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert effective_precision("eager", "auto", cpu) == "fp32"
    assert effective_precision("eager", "bf16", cpu) == "bf16"
    assert effective_precision("onnx", "auto", cpu) == "fp32"
    assert effective_precision("tensorrt", "auto", cuda) == "fp16"  # TensorRT's auto: fp16 engines
    assert effective_precision("tensorrt", "bf16", cuda) == "bf16"


def test_repaint_nfe_counts_the_network_calls_of_the_paper_loop():
    """The paper baseline's cost (README: 1910 evaluations): RePaint runs the network once per step down in time;
    the jumps back up only re-noise. 200 steps, jumps of 10 resampled 10 times: 200 + 19 jumps x 9 x 10."""
    from fastsynth.bench import repaint_nfe

    assert repaint_nfe() == 200 + 19 * 9 * 10 == 1910
    assert repaint_nfe(20, 10, 1) == 20  # no resampling: plain DDPM
    assert repaint_nfe(20, 5, 2) == 20 + 3 * 1 * 5  # counted by hand from RePaintScheduler's 50 timesteps


def test_bench_end_to_end_and_baselines_are_derived_consistently():
    """Every speed claim comes from these records: end-to-end pairs/s is the batch over the measured seconds, the
    two baselines reuse one measured untuned per-eval time times their NFE, and a backend that fails is recorded
    as skipped, not dropped."""
    from fastsynth.bench import repaint_nfe, run_bench
    from fastsynth.errors import FastsynthError

    b = 2
    with pytest.raises(FastsynthError, match="no-such-backend"):  # a name that is no backend: refused up front
        run_bench(backends=("eager", "no-such-backend"), batch_sizes=(b,), device="cpu", repeats=1,
                  log=lambda *a: None, preset="tiny", resolution=16)
    # tensorrt needs a CUDA GPU: on this CPU it fails when built, and is recorded as skipped
    res = run_bench(backends=("eager", "tensorrt"), batch_sizes=(b,), device="cpu", repeats=1,
                    baselines=True, log=lambda *a: None, preset="tiny", resolution=16)
    recs = {r["scenario"] + ":" + r["backend"]: r for r in res["records"]}
    skipped = recs["per_eval:tensorrt"]
    assert "skipped" in skipped and "evals_per_s" not in skipped
    per_eval = recs["per_eval:eager"]
    assert per_eval["evals_per_s"] == pytest.approx(b / (per_eval["ms_per_eval"] / 1000))
    assert per_eval["achieved_flops"] == pytest.approx(per_eval["evals_per_s"] * per_eval["flops_per_eval"])
    e2e = recs["end_to_end:eager"]
    assert e2e["nfe"] >= 1 and e2e["pairs_per_s"] == pytest.approx(b / e2e["seconds_per_batch"])
    assert e2e["evals_per_s"] == pytest.approx(b * e2e["nfe"] / e2e["seconds_per_batch"])
    loop = next(r for r in res["records"] if r["scenario"] == "baseline_diffusers_loop")
    paper = next(r for r in res["records"] if r["scenario"] == "baseline_paper_repaint")
    assert loop["derived"] and paper["derived"] and loop["nfe"] == 50 and paper["nfe"] == repaint_nfe()
    assert loop["ms_per_eval"] == paper["ms_per_eval"]  # one measurement, two NFEs
    for r in (loop, paper):
        assert r["pairs_per_s"] == pytest.approx(b / (r["nfe"] * r["ms_per_eval"] / 1000))
    (vs,) = res["vs_untuned_baseline"]
    assert vs["backend"] == "eager" and vs["speedup"] == pytest.approx(loop["ms_per_eval"] / per_eval["ms_per_eval"])


def test_a_tuned_backend_slower_than_the_untuned_baseline_is_reported_slower():
    from fastsynth.bench import compare_with_untuned

    recs = [{"scenario": "per_eval", "backend": "eager", "batch_size": 64, "ms_per_eval": 656.5},
            {"scenario": "per_eval", "backend": "onnx", "batch_size": 64, "ms_per_eval": 548.1},
            {"scenario": "per_eval", "backend": "onnx", "batch_size": 32, "ms_per_eval": 300.0},  # no baseline at 32
            {"scenario": "per_eval", "backend": "compile", "batch_size": 64, "skipped": "no compiler"},
            {"scenario": "baseline_diffusers_loop", "backend": "eager (NCHW, no tuning)", "batch_size": 64,
             "ms_per_eval": 630.3}]
    vs = {c["backend"]: c for c in compare_with_untuned(recs)}
    assert set(vs) == {"eager", "onnx"}
    assert vs["eager"]["verdict"] == "slower" and vs["eager"]["speedup"] == pytest.approx(630.3 / 656.5)
    assert vs["onnx"]["verdict"] == "faster" and vs["onnx"]["speedup"] == pytest.approx(630.3 / 548.1)
    # the committed CPU result says so too (README: tuned eager is slower than the untuned loop there)
    committed = json.loads((Path(__file__).parents[1] / "benchmarks/results/bench_cpu.json").read_text())
    verdicts = {c["backend"]: c["verdict"] for c in compare_with_untuned(committed["records"])}
    assert verdicts == {"eager": "slower", "onnx": "faster"}


def test_each_precision_is_measured_against_its_own_cpu_peak(monkeypatch):
    import torch

    import fastsynth.bench as bench
    import fastsynth.utils as utils

    calls = []
    monkeypatch.setattr(bench, "cpu_peak_flops", lambda seconds=1.0, dtype=torch.float32: calls.append(dtype) or (
        2e11 if dtype == torch.bfloat16 else 1e11))
    cpu = torch.device("cpu")
    assert bench.device_peak(cpu, "fp32") == (1e11, "measured fp32 GEMM (1024^3, torch BLAS)")
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: True)
    peak, src = bench.device_peak(cpu, "bf16")
    assert peak == 2e11 and "bf16" in src  # AMX / AVX512_BF16: a bf16 row is not put above 100% of the fp32 peak
    monkeypatch.setattr(utils, "cpu_has_bf16", lambda info=None: False)
    peak, _ = bench.device_peak(cpu, "bf16")
    assert peak != peak  # no native bf16: no peak claimed
    peak, _ = bench.device_peak(cpu, "int8")
    assert peak != peak
    assert calls == [torch.float32, torch.bfloat16]
