"""benchmarks/mask_spread.py and dice_by_area.py: the area-bin breakdowns say where generated masks part from the
real ones, and where segmenters trained on them lose."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _module(name="mask_spread"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stats(areas, comps):
    return {"area_fraction": np.asarray(areas, float), "components": np.asarray(comps, np.int64)}


def test_area_bins_count_each_set_in_the_real_quantile_bins():
    ms = _module()
    real = _stats(np.linspace(0.01, 0.5, 100), [1] * 95 + [2] * 5)
    # the synthetic set has no small masks: everything at or above the real median
    synth = _stats(np.linspace(0.26, 0.5, 40), [2] * 10 + [1] * 30)
    agreement = np.linspace(0.0, 1.0, 40)
    rows = ms.area_bins(real, synth, agreement, threshold=0.5)
    assert len(rows) == 6 and abs(sum(r["real_share"] for r in rows) - 1) < 1e-9
    assert [round(r["real_share"], 2) for r in rows] == [0.1, 0.15, 0.25, 0.25, 0.15, 0.1]
    assert abs(sum(r["synthetic_share"] for r in rows) - 1) < 1e-9
    assert rows[0]["synthetic_share"] == rows[1]["synthetic_share"] == rows[2]["synthetic_share"] == 0.0
    assert "median_agreement" not in rows[0]  # no synthetic mask there
    top = rows[-1]
    in_top = synth["area_fraction"] >= top["area"][0]
    assert abs(top["median_agreement"] - np.median(agreement[in_top])) < 1e-12
    assert abs(top["kept_share"] - np.mean(agreement[in_top] >= 0.5)) < 1e-12
    lo, hi = rows[3]["area"]
    in_bin = (synth["area_fraction"] >= lo) & (synth["area_fraction"] < hi)
    assert in_bin[:10].all() and 0 < rows[3]["synthetic_multi_region"] < 1  # the ten smallest have two regions
    assert abs(rows[3]["synthetic_multi_region"] - 10 / in_bin.sum()) < 1e-12


def test_dice_by_area_averages_each_group_per_bin_with_the_spread_of_its_segmenters():
    da = _module("dice_by_area")
    area = np.array([0.01, 0.02, 0.2, 0.3])
    edges = np.array([0.0, 0.1, 1.0])
    dice = {"a": np.array([[0.1, 0.3, 0.8, 0.9], [0.3, 0.5, 0.6, 0.7]]), "b": np.array([[0.5, 0.5, 0.5, 0.5]])}
    rows = da.bin_table(area, edges, dice)
    assert [r["n"] for r in rows] == [2, 2]
    assert abs(rows[0]["a"]["dice"] - 0.3) < 1e-12 and abs(rows[1]["a"]["dice"] - 0.75) < 1e-12
    assert abs(rows[0]["a"]["seed_std"] - np.std([0.2, 0.4], ddof=1)) < 1e-12  # per-segmenter means 0.2 and 0.4
    assert rows[1]["b"] == {"dice": 0.5, "seed_std": 0.0}
