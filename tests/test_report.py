"""report.html: the evaluation page, rendered in a real browser (Debian's chromium driven by Selenium through the
installed chromedriver; no browser is downloaded). Skips with the reason where either is missing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_metrics import make_synth_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _fake_downstream():
    def seeds(vals):
        return {"n": 2, "n_seeds": len(vals), "dice": float(np.mean(vals)), "dice_seed_std": float(np.std(vals)),
                "dice_per_seed": vals, "iou": float(np.mean(vals)) - 0.1, "iou_seed_std": 0.01,
                "iou_per_seed": [v - 0.1 for v in vals]}

    return {"settings": {"arch": "unet", "encoder": "resnet18", "resolution": 32, "steps": 3, "batch_size": 2,
                         "seed": 0, "seeds": [0, 1, 2]},
            "runs": {"real": {"test": {"heldout": seeds([0.6431, 0.6518, 0.6377])}},
                     "synthetic": {"test": {"heldout": seeds([0.6012, 0.6123, 0.6089])}}},
            "comparisons": [{"candidate": "synthetic", "baseline": "real", "test": "heldout", "dice_delta": -0.0367,
                             "spread": 0.0071, "ratio": 0.94, "verdict": "worse"}]}


@pytest.fixture
def evaluated(tmp_path, monkeypatch):
    """A dataset evaluated by the real `fastsynth evaluate` command (the segmenters stood in for)."""
    from conftest import make_pair_folder

    from fastsynth.cli import main

    real = make_pair_folder(tmp_path / "real", n=8, size=(32, 32))
    ds = make_synth_dataset(tmp_path / "ds", n=8, res=32, shard_size=4)
    monkeypatch.setattr("fastsynth.metrics.downstream.run_benchmark", lambda *a, **k: _fake_downstream())
    assert main(["evaluate", str(ds), "--real", str(real), "--metrics", "masks,msssim", "--downstream",
                 "--msssim-pairs", "10", "--no-progress"]) == 0
    return ds


def test_report_is_written_self_contained(evaluated):
    page = (evaluated / "eval" / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing to fetch
    assert page.count('src="data:image/png;base64,') >= 3
    assert "samples_real" not in page and "Real held-out pairs" in page  # inline, not a file reference


def test_published_report_has_no_real_images(evaluated):
    from fastsynth.publish.hub import public_bytes

    pub = public_bytes(evaluated, "eval/report.html").decode()
    assert "Real held-out pairs" not in pub and "Synthetic pairs" in pub
    assert str(evaluated) not in pub


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no chromium + chromedriver installed (Debian: apt "
                                                             "install chromium chromium-driver)")
def test_report_in_a_real_browser(evaluated):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--window-size=1280,1000", f"--user-data-dir={evaluated / 'chrome-profile'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get((evaluated / "eval" / "report.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        assert len(images) >= 3 and all(done and w > 0 for done, w, _ in images), images
        text = driver.find_element("tag name", "body").text
        metrics = json.loads((evaluated / "eval" / "metrics.json").read_text())
        for run in metrics["downstream"]["runs"].values():
            s = run["test"]["heldout"]
            assert f"{s['dice']:.4f}" in text and all(f"{v:.4f}" in text for v in s["dice_per_seed"])
        mk = metrics["masks"]
        assert f"{mk['synthetic']['area_fraction_mean']:.4f}" in text and f"{mk['real']['area_fraction_mean']:.4f}" in text
        assert f"{metrics['msssim']['synthetic']['mean']:.4f}" in text and "worse" in text
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"horizontal scroll at 1280 px: {width}"
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()
