import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kvasir-seg"


def make_pair_folder(root: Path, n: int = 6, size=(40, 48), seed: int = 0, ext: str = ".png") -> Path:
    """A tiny Kvasir-SEG-like folder: reddish images with a brighter disc, and the disc as the mask."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx, r = rng.integers(10, h - 10), rng.integers(10, w - 10), rng.integers(4, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = np.stack([np.full((h, w), 150), np.full((h, w), 60), np.full((h, w), 50)], -1).astype(np.int32)
        img += rng.integers(-20, 20, size=img.shape)
        img[disc] += 60
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"case{i:03d}{ext}")
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"case{i:03d}.png")
    return root


@pytest.fixture
def pair_folder(tmp_path) -> Path:
    return make_pair_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny 16x16 model trained for a few steps on generated pairs (seconds): enough for plumbing."""
    from fastsynth.config import TrainConfig
    from fastsynth.training import train

    root = tmp_path_factory.mktemp("tiny")
    data = make_pair_folder(root / "data", n=8)
    cfg = TrainConfig(data=str(data), out=str(root / "run"), preset="tiny", resolution=16, steps=40,
                      batch_size=8, lr=1e-3, warmup_steps=5, checkpoint_every=1000, test_fraction=0.0)
    train(cfg, progress=False)
    return root / "run" / "model"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or write the user's cache (cached reference features, cached real segmenters)."""
    old = os.environ.get("FASTSYNTH_CACHE")
    os.environ["FASTSYNTH_CACHE"] = str(tmp_path_factory.mktemp("fastsynth-cache"))
    yield
    if old is None:
        os.environ.pop("FASTSYNTH_CACHE", None)
    else:
        os.environ["FASTSYNTH_CACHE"] = old


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip cleanly without a CUDA GPU (``pytest -m gpu`` on a CPU machine: all skipped)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_modality_folder(root: Path, n: int = 6, size=(40, 48), seed: int = 0, kind: str = "L",
                         classes: int = 2) -> Path:
    """A tiny grey / 16-bit / RGB folder with a binary mask (classes=2: {0, 255}) or a label map with values
    0..classes-1: a disc of class 1 inside a ring of class 2 (and so on outwards), like a heart cavity and wall."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx, r = rng.integers(12, h - 12), rng.integers(12, w - 12), rng.integers(4, 7)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        label = np.zeros((h, w), np.uint8)
        for k in range(classes - 1, 0, -1):  # outer rings first, inner class 1 last
            label[d2 <= (r + 3 * (k - 1)) ** 2] = k
        if kind == "I;16":
            img = 800 + rng.integers(-100, 100, (h, w)) + 900 * (label > 0) + 300 * (label == 1)
            Image.fromarray(img.astype(np.uint16)).save(root / "images" / f"p{i % 3}-{i:03d}.png")
        else:
            g = 60 + rng.integers(-20, 20, (h, w)) + 80 * (label > 0) + 40 * (label == 1)
            g = np.clip(g, 0, 255).astype(np.uint8)
            arr = g if kind == "L" else np.stack([g, g // 2, g // 3], -1)
            Image.fromarray(arr).save(root / "images" / f"p{i % 3}-{i:03d}.png")
        out = (label > 0).astype(np.uint8) * 255 if classes == 2 else label
        Image.fromarray(out).save(root / "masks" / f"p{i % 3}-{i:03d}.png")
    return root


@pytest.fixture
def no_choice_after():
    """The session's cache outlives a test: leave no machine choice (``bench --choose``) behind for other tests'
    ``auto``."""
    from fastsynth.runtime.choice import choice_path

    yield
    choice_path().unlink(missing_ok=True)
