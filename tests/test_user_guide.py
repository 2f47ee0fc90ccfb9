"""What a user reads is true: --help states each default once, info prints the effective settings of each mode,
bundled models work by name wherever a model is read (issue 23, point 3)."""

import subprocess
import sys

import pytest

from fastsynth.errors import FastsynthError

COMMANDS = ("train", "distill", "generate", "info", "export", "bench", "evaluate", "filter", "train-filter", "publish")


def _help(cmd):
    from fastsynth.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[cmd].format_help()


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_states_each_default_once(cmd):
    import re

    text = " ".join(_help(cmd).split())  # argparse wraps lines anywhere
    assert "(default: None)" not in text and "(default: False)" not in text
    # an option whose own text says its default gets no second "(default: ...)"
    assert not re.search(r"default[^()]*\([^()]*\)[^()]*\) \(default:", text)
    assert not re.search(r"\(default: [^)]*\) \(default:", text)


def test_generate_help_says_models_carry_their_own_defaults():
    text = " ".join(_help("generate").split())
    assert "fastsynth info --model M" in text and "the model's own" in text


def test_info_prints_the_effective_settings_of_every_mode():
    r = subprocess.run([sys.executable, "-m", "fastsynth", "info", "--json"], capture_output=True, text=True)
    import json

    info = json.loads(r.stdout)
    assert info["defaults_pairs"] == "unipc x4, one pass, mask fixed at sigma 1.5, 4 network evaluations per pair"
    assert info["defaults_from-masks"].startswith("unipc x6") and "defaults_inpaint" in info
    assert info["space"] == "pixels"


def test_bundled_models_work_by_name_as_the_real_reference(monkeypatch):
    from fastsynth.metrics.io import resolve_real

    with pytest.raises(FastsynthError, match="no such folder .*bundled-ultrasound"):
        resolve_real("no-such-model-or-folder")
    monkeypatch.setenv("FASTSYNTH_DATA", "/nonexistent")
    try:
        resolve_real("bundled")
    except FastsynthError as exc:  # the name resolved to the bundled model; its training data is not here
        assert "no such folder" not in str(exc) and "kvasir-seg" in str(exc)


def test_long_commands_end_with_a_summary(pair_folder, tmp_path, capsys):
    from fastsynth.config import TrainConfig
    from fastsynth.training import train

    train(TrainConfig(data=str(pair_folder), out=str(tmp_path / "r"), preset="tiny", resolution=16, steps=2,
                      batch_size=2, test_fraction=0.34, warmup_steps=1), progress=False, time_limit_min=None)
    out = capsys.readouterr().out
    assert "trained to step 2 (2 steps in" in out and "it/s); model in" in out and "log.jsonl" in out


def test_info_lists_the_shipped_models_and_says_which_is_which(capsys):
    from fastsynth.cli import main
    from fastsynth.models.denoiser import BUNDLED_MODELS

    assert main(["info", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {ln.split(":")[0].strip(): ln for ln in lines}
    assert set(names) == set(BUNDLED_MODELS) - {"default"}
    assert "the default" in names["bundled"] and sum("the default" in ln for ln in lines) == 1
    assert "256x256 latent" in names["bundled-256"] and "agrees" in names["bundled-256"]
    assert "64x64 pixels" in names["bundled"] and "distilled" in names["bundled-fast"]
    assert "16-bit grey" in names["bundled-hippocampus"]
