"""fastsynth train --oversample-small: the pairs with the smallest masks drawn more often."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastsynth.config import TrainConfig
from fastsynth.data.modality import Modality
from fastsynth.training.train import _step_generator, foreground_areas, make_batch, small_area_weights


def test_weights_raise_the_smallest_quarter_of_non_empty_masks_only():
    areas = np.array([0.0, 0.01, 0.02, 0.03, 0.04, 0.2, 0.3, 0.4, 0.5])
    assert small_area_weights(areas, 1.0) is None
    w = small_area_weights(areas, 4.0).tolist()
    # non-empty areas 0.01..0.5 (8): their 25 % quantile is 0.0275 (linear), so 0.01 and 0.02 are the small ones
    assert w == [1.0, 4.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert small_area_weights(np.zeros(5), 3.0).tolist() == [1.0] * 5  # nothing to oversample


def test_foreground_areas_of_binary_and_class_label_pairs():
    arr = np.zeros((2, 4, 4, 4), np.uint8)
    arr[0, 3, :2, :] = 255  # half the binary mask
    arr[1, 3, 0, 0] = 100  # below the binary threshold: background
    assert foreground_areas(arr, Modality()).tolist() == [0.5, 0.0]
    lab = np.zeros((1, 2, 4, 4), np.uint8)
    lab[0, 1, 0, :] = 2  # class 2 of a label map (grey image + label channel)
    assert foreground_areas(lab, Modality(channels=1, class_names=("bg", "a", "b"))).tolist() == [0.25]


def test_batches_follow_the_weights():
    arr = np.zeros((8, 4, 8, 8), np.uint8)
    for i in range(8):
        arr[i, :3] = 20 * i  # the pair's index in its grey level
        arr[i, 3, :4, :4] = 255
    cfg = TrainConfig(p_pairs=1, p_from_masks=0, p_inpaint=0, hflip=False)
    weights = torch.ones(8)
    weights[5] = 50.0
    x0, _, _ = make_batch(torch.from_numpy(arr), cfg, _step_generator(0, 0, 0), 400, 1, weights=weights)
    drawn = torch.round((x0[:, 0, 0, 0] + 1) * 127.5 / 20).long()
    share = float((drawn == 5).float().mean())
    assert 0.8 < share < 0.95  # 50 / 57 = 0.877
    again, _, _ = make_batch(torch.from_numpy(arr), cfg, _step_generator(0, 0, 0), 400, 1, weights=weights)
    assert torch.equal(x0, again)  # deterministic per step generator (resume repeats it)
    uniform, _, _ = make_batch(torch.from_numpy(arr), cfg, _step_generator(0, 0, 0), 400, 1)
    assert float((torch.round((uniform[:, 0, 0, 0] + 1) * 127.5 / 20).long() == 5).float().mean()) < 0.25


def test_the_model_records_the_factor(pair_folder, tmp_path):
    from fastsynth.models import load_model
    from fastsynth.training import train

    cfg = TrainConfig(data=str(pair_folder), out=str(tmp_path / "run"), preset="tiny", resolution=16, steps=2,
                      batch_size=4, checkpoint_every=2, test_fraction=0.34, warmup_steps=1, oversample_small=3.0)
    out = train(cfg, progress=False)
    _, meta = load_model(out)
    assert meta["training"]["oversample_small"] == 3.0
    assert json.loads((out / "config.json").read_text())["oversample_small"] == 3.0


@pytest.mark.parametrize("value", ["0", "-1", "1000"])
def test_a_bad_factor_is_one_line_exit_2_and_nothing_written(pair_folder, tmp_path, value):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "fastsynth", "train", "--data", str(pair_folder), "--out", str(out),
                        "--preset", "tiny", "--resolution", "16", "--steps", "1", f"--oversample-small={value}"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "--oversample-small" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
