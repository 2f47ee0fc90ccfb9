"""benchmarks/compare_judges.py: side-by-side verdicts of two judged datasets use the judge's own rule."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _judge(path: Path, synthetic: list[float], mixed: list[float]) -> Path:
    def run(v):
        arr = [float(x) for x in v]
        mean = sum(arr) / len(arr)
        std = (sum((x - mean) ** 2 for x in arr) / (len(arr) - 1)) ** 0.5
        return {"test": {"heldout": {"dice": mean, "dice_seed_std": std, "dice_per_seed": arr}}}
    path.write_text(json.dumps({"downstream": {"runs": {"synthetic": run(synthetic), "real+synthetic": run(mixed)}}}))
    return path


def test_compare_judges_calls_only_differences_beyond_the_spread(tmp_path):
    base = _judge(tmp_path / "base.json", [0.62, 0.63, 0.61], [0.64, 0.65, 0.63])
    cand = _judge(tmp_path / "cand.json", [0.52, 0.53, 0.51], [0.645, 0.64, 0.635])
    out = tmp_path / "cmp.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compare_judges.py"), str(base), str(cand),
                        "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {c["protocol"]: c for c in json.loads(out.read_text())["comparisons"]}
    assert rows["synthetic"]["verdict"] == "worse" and abs(rows["synthetic"]["dice_delta"] + 0.1) < 1e-6
    assert rows["real+synthetic"]["verdict"] == "not distinguishable"
    assert "low-data-64+synthetic" not in rows  # absent from both files: skipped, not invented
