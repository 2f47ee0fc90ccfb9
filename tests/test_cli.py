"""The CLI as a user meets it: clear errors without tracebacks, and kill -9 + rerun equality."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastsynth.cli import main


def _arrays(p: Path):
    """(index, images, masks) of a generated dataset, loaded with a private cache."""
    import datasets

    ds = datasets.load_dataset(str(p), split="train", cache_dir=str(p.parent / f"cache-{p.name}"))
    return ds["index"], np.stack([np.array(x) for x in ds["image"]]), np.stack([np.array(x) for x in ds["mask"]])


def _run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("train", "generate", "info"):
        assert cmd in out


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/data", "--out", "{tmp}/run"], "/nonexistent/data: no such folder"),
    (["generate", "--n", "0", "--out", "{tmp}/o"], "--n 0: must be at least 1"),
    (["generate", "--n", "2", "--model", "/nonexistent/model", "--out", "{tmp}/o"], "--model /nonexistent/model: no such folder"),
    (["generate", "--n", "2", "--mode", "from-masks", "--model", "{model}", "--out", "{tmp}/o"], "needs --masks"),
    (["generate", "--n", "2", "--mode", "from-masks", "--masks", "{tmp}/none", "--model", "{model}", "--out", "{tmp}/o"], "no such folder of masks"),
    (["info", "--model", "{tmp}"], "expected config.json"),
    (["generate", "--n", "2", "--seed", "-1", "--model", "{model}", "--out", "{tmp}/o"], "--seed -1: must be a non-negative"),
    (["generate", "--n", "2", "--sampler", "ddpm", "--steps", "2000", "--model", "{model}", "--out", "{tmp}/o"], "--steps 2000: must be between 1 and 1000"),
    (["generate", "--n", "2", "--model", "{model}", "--out", "{tmp}/file.txt"], "exists and is not a folder"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--test-fraction", "1.5"], "--test-fraction 1.5: must be in [0, 1)"),
    (["train", "--data", "{tmp}", "--out", "{tmp}/run", "--checkpoint-every", "0"], "--checkpoint-every 0: must be >= 1"),
    (["bench", "--model", "{model}", "--repeats", "0"], "--repeats 0: must be at least 1"),
])
def test_user_errors_are_one_line(args, message, tmp_path, tiny_model_dir, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    args = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in args]
    code, out, err = _run(args, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


def test_bad_data_error_names_file(tmp_path, capsys):
    from conftest import make_pair_folder

    data = make_pair_folder(tmp_path / "d", n=3)
    (data / "masks" / "case001.png").unlink()
    code, _, err = _run(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny",
                         "--resolution", "16", "--steps", "1"], capsys)
    assert code == 2 and "case001.png: no mask with the same stem" in err
    assert not (tmp_path / "run").exists()


def test_info(tiny_model_dir, capsys):
    code, out, _ = _run(["info", "--model", str(tiny_model_dir)], capsys)
    assert code == 0 and "resolution: 16" in out and "steps_trained: 40" in out


def test_generate_cli_summary(tiny_model_dir, tmp_path, capsys):
    code, out, _ = _run(["generate", "--n", "3", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
                         "--steps", "2", "--no-progress", "--backend", "eager"], capsys)
    assert code == 0 and "generated 3 pairs" in out and "dataset complete" in out
    # --guidance-interval all: guidance at every step, recorded as no interval
    code, out, _ = _run(["generate", "--n", "2", "--model", str(tiny_model_dir), "--out", str(tmp_path / "all"),
                         "--steps", "2", "--no-progress", "--backend", "eager", "--guidance-interval", "all"], capsys)
    manifest = json.loads((tmp_path / "all" / "fastsynth.json").read_text())
    assert code == 0 and manifest["guidance"] == 2.0 and "guidance_interval" not in manifest
    assert json.loads((tmp_path / "o" / "fastsynth.json").read_text())["guidance_interval"] == [0.28, 5.42]


@pytest.mark.slow
def test_kill_9_and_rerun_gives_identical_dataset(tiny_model_dir, tmp_path):
    """A real SIGKILL in the middle of a run, then the same command again."""
    cmd = [sys.executable, "-m", "fastsynth", "generate", "--n", "60", "--model", str(tiny_model_dir),
           "--steps", "25", "--batch-size", "2", "--shard-size", "6", "--no-progress", "--seed", "3", "--backend", "eager"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "cut")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    data = tmp_path / "cut" / "data"
    t_end = time.time() + 120
    while time.time() < t_end and len(list(data.glob("train-*.parquet"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(data.glob("train-*.parquet")))
    assert 2 <= n_before < 10, "the kill should land mid-run"
    subprocess.run(cmd + ["--out", str(tmp_path / "cut")], check=True, env=env, capture_output=True)

    ia, xa, ma = _arrays(tmp_path / "ref")
    ib, xb, mb = _arrays(tmp_path / "cut")
    assert ia == ib == list(range(60))
    assert np.array_equal(xa, xb) and np.array_equal(ma, mb)


@pytest.mark.slow
def test_two_processes_write_the_single_process_dataset(tiny_model_dir, tmp_path):
    """RANK/WORLD_SIZE as set by accelerate launch / torchrun: shards split k % world, result identical."""
    cmd = [sys.executable, "-m", "fastsynth", "generate", "--n", "14", "--model", str(tiny_model_dir),
           "--steps", "3", "--batch-size", "4", "--shard-size", "3", "--no-progress", "--device", "cpu",
           "--backend", "eager"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd + ["--out", str(tmp_path / "single")], check=True, env=env, capture_output=True)
    procs = [subprocess.Popen(cmd + ["--out", str(tmp_path / "multi")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={**env, "RANK": str(r), "WORLD_SIZE": "2"})
             for r in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # whichever process finishes last sees every shard and writes the final manifest and card
    assert any(b"dataset complete" in o for o, _ in outs)
    assert json.loads((tmp_path / "multi" / "fastsynth.json").read_text())["complete"] is True

    ia, xa, ma = _arrays(tmp_path / "single")
    ib, xb, mb = _arrays(tmp_path / "multi")
    assert ia == ib == list(range(14))
    assert np.array_equal(xa, xb) and np.array_equal(ma, mb)


def test_every_option_shows_its_default_in_help():
    """--help lists every option's default (argparse's formatter shows it only for options with a help text)."""
    import argparse

    from fastsynth.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [(name, a.option_strings) for name, sp in sub.choices.items() for a in sp._actions
               if a.option_strings and a.dest != "help" and not a.help]
    assert not missing, missing
