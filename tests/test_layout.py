"""Housekeeping a newcomer trips on: no stray temporaries in the checkout, imports that only point down."""

import ast
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fastsynth"


def test_no_onnx_temporaries_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert not [f for f in tracked if f.endswith(".onnx")], "ONNX files are build outputs, not sources"
    ignored = subprocess.run(["git", "check-ignore", "-q", "sym_shape_infer_temp.onnx"], cwd=ROOT)
    assert ignored.returncode == 0, ".gitignore must ignore sym_shape_infer_temp.onnx"


def test_onnx_export_keeps_the_working_directory_clean(tmp_path, monkeypatch):
    """Whatever the exporter (or ONNX Runtime's shape inference) drops into the working directory stays in a
    temporary folder that is removed afterwards."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from fastsynth.runtime import onnx as ox

    def fake_export(module, args, f, **kw):
        Path("sym_shape_infer_temp.onnx").write_bytes(b"junk")  # what ORT's symbolic shape inference does
        Path(f).write_bytes(b"model")

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(torch.onnx, "export", fake_export)
    out = ox._export(torch.nn.Identity(), (torch.zeros(1, 1),), ["x"], "y", Path("out/model.onnx"))
    assert sorted(p.name for p in work.rglob("*")) == ["model.onnx", "out"]
    assert out.read_bytes() == b"model"


# layers of the package, bottom (0) to top: a module imports only from its own layer or below
LAYERS = [
    ("fastsynth", "fastsynth.errors", "fastsynth.utils", "fastsynth.config", "fastsynth.morphology"),
    ("fastsynth.data", "fastsynth.sampling", "fastsynth.conditioning", "fastsynth.models", "fastsynth.dataset",
     "fastsynth.metrics.io", "fastsynth.metrics.fid", "fastsynth.metrics.msssim", "fastsynth.metrics.masks",
     "fastsynth.metrics.memorization", "fastsynth.metrics.plots", "fastsynth.metrics.leakage",
     "fastsynth.metrics", "fastsynth.publish.card", "fastsynth.publish"),
    ("fastsynth.runtime", "fastsynth.training", "fastsynth.pipeline"),
    ("fastsynth.metrics.downstream", "fastsynth.metrics.filter", "fastsynth.metrics.suite", "fastsynth.bench",
     "fastsynth.export", "fastsynth.publish.hub"),
    ("fastsynth.cli", "fastsynth.__main__"),
]


def _layer(mod: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if (mod == n or mod.startswith(n + ".")) and (best is None or len(n) > best[1]):
                best = (i, len(n))
    assert best is not None, f"{mod} is in no layer of tests/test_layout.py"
    return best[0]


def _imports(path: Path) -> set[str]:
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        mod = mod[: -len(".__init__")]
        pkg = mod
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("fastsynth"):
                names = [target + "." + a.name for a in node.names]
                # "from . import x" / "from .pkg import sub" import a submodule when one exists
                for n in names:
                    sub = ROOT / Path(*n.split("."))
                    out.add(n if sub.with_suffix(".py").exists() or sub.is_dir() else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fastsynth"))
    return out


def test_every_import_points_down():
    up = []
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for target in _imports(f):
            if _layer(target) > _layer(mod):
                up.append(f"{mod} -> {target}")
    assert not up, "imports that run upward:\n" + "\n".join(up)


def _module_graph() -> dict[str, set[str]]:
    graph = {}
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[mod] = {t for t in _imports(f) if t != mod}
    return graph


def test_the_layers_name_real_modules():
    modules = set(_module_graph())
    missing = [n for names in LAYERS for n in names if n not in modules]
    assert not missing, f"tests/test_layout.py names modules that do not exist: {missing}"


def test_no_import_cycles():
    """No module reaches itself through imports (function-level imports included: a cycle hidden inside a function
    is still a cycle)."""
    graph = _module_graph()
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if t in graph}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10000))
    try:
        for v in graph:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    assert not cycles, f"import cycles: {cycles}"


def test_dead_code_is_gone():
    import dataclasses

    import fastsynth.data as data
    from fastsynth.config import TrainConfig, from_dict
    from fastsynth.models.denoiser import Denoiser

    assert not hasattr(Denoiser, "make_cond") and not hasattr(data, "load_image_folder")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert not fields & {"sample_every", "num_workers"}
    # old run folders that still hold the removed keys keep loading
    assert from_dict(TrainConfig, {"steps": 5, "sample_every": 0, "num_workers": 0}).steps == 5


# within a layer, helpers are not borrowed from a sibling stage: they live below (utils, dataset, ...)
FORBIDDEN = [
    ("fastsynth", "fastsynth.pipeline"),  # generate() is a command; only the CLI calls it
    ("fastsynth.runtime", "fastsynth.training"),
    ("fastsynth.training", "fastsynth.runtime"),
    ("fastsynth.publish", "fastsynth.metrics"),
    ("fastsynth.sampling", "fastsynth.models"),
    ("fastsynth.metrics", "fastsynth.training"),
]


def test_no_helpers_borrowed_sideways():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if mod.startswith(("fastsynth.cli", "fastsynth.pipeline", "fastsynth.__main__")):
            continue
        for target in _imports(f):
            for src, dst in FORBIDDEN:
                if (mod == src or mod.startswith(src + ".")) and (target == dst or target.startswith(dst + ".")):
                    bad.append(f"{mod} -> {target}")
    assert not bad, "helpers borrowed from a sibling stage:\n" + "\n".join(bad)


def test_first_onnx_export_says_so_and_hides_exporter_noise(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import logging

    from fastsynth.runtime import onnx as ox

    def fake_export(module, args, f, **kw):
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping %s", "torchvision::roi_align")
        Path(f).write_bytes(b"model")

    monkeypatch.setenv("FASTSYNTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.onnx, "export", fake_export)
    monkeypatch.setattr(ox, "export_segmenter_onnx",
                        lambda m, p, r: ox._export(m, (torch.zeros(1, 3, r, r),), ["image"], "logits", Path(p)))
    logging.basicConfig()  # a root handler, as an application would have
    ox.cached_onnx(torch.nn.Identity(), "ab" * 32, kind="segmenter", resolution=8)
    err = capsys.readouterr().err
    assert "exporting the segmenter to ONNX" in err and "half a minute" in err
    assert "torchvision" not in err
