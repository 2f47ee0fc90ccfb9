"""Round trip of real masks through each mask representation of a latent model (issue 21, point 3).

For the held-out masks of a split (``--split``: a run's or model's split.json) read at ``--resolution`` from a
data folder: labels -> grid -> full-resolution logits -> threshold (and, separately, the resolution-scaled opening
that generated masks get), IoU against the mask. ``pool`` and ``s2d`` need nothing trained; ``ae`` needs a
model's or run's ``mask_codec.safetensors`` (``--codec``). For comparison, ``pixel64``: the mask at 64^2 (what the
pixel model generates) upsampled bilinearly.

    python benchmarks/mask_round_trip.py --data ../shared/data/kvasir-seg --split runs/lat256-pool/split.json \
        --codec runs/lat256-ae/mask_codec.safetensors --out benchmarks/results/mask_round_trip_256_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

from fastsynth.data import load_pairs, scan_pairs
from fastsynth.data.modality import Modality
from fastsynth.models.latent import grid_to_logits, labels_to_grid, load_mask_codec
from fastsynth.sampling.masks import opening_size
from fastsynth.training.mask_codec import round_trip_iou


def summary(iou: torch.Tensor) -> dict:
    return {"mean": round(float(iou.mean()), 4), "p5": round(float(iou.quantile(0.05)), 4),
            "min": round(float(iou.min()), 4), "n_below_0.95": int((iou < 0.95).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True, help="split.json whose test stems are measured")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--codec", default=None, help="mask_codec.safetensors of an ae run")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    split = json.loads(Path(a.split).read_text())
    stems, arr = load_pairs(scan_pairs(a.data), a.resolution, split["test"])
    labels = torch.from_numpy(arr[:, 3].copy())
    m = Modality()
    reprs = {r: (lambda ch, r=r: labels_to_grid(ch, r), lambda g, r=r: grid_to_logits(g, r)) for r in ("pool", "s2d")}
    if a.codec:
        codec = load_mask_codec(a.codec, 1)
        reprs["ae"] = (codec.encode, codec.decode)
    f = a.resolution // 64
    reprs["pixel64"] = (lambda ch: F.avg_pool2d(ch, f), lambda g: F.interpolate(g, scale_factor=f, mode="bilinear"))
    k = opening_size(a.resolution)
    out = {"data": Path(a.data).name, "n_masks": len(stems), "resolution": a.resolution, "opening_px": k,
           "split": Path(a.split).as_posix().split("runs/")[-1], "results": {}}
    for name, (enc, dec) in reprs.items():
        plain = round_trip_iou(labels, m, enc, dec)
        cleaned = _with_opening(labels, m, enc, dec, k)
        out["results"][name] = {"threshold": summary(plain), "threshold_and_opening": summary(cleaned)}
        print(f"{name:8s} IoU {summary(plain)}  with the opening {summary(cleaned)}")
    out["environment"] = {"python": platform.python_version(), "torch": torch.__version__,
                          "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                                text=True).stdout.strip()}
    out["command"] = "python benchmarks/mask_round_trip.py " + " ".join(
        f"--{k} {Path(v).name if k in ('data', 'out') else v}" for k, v in vars(a).items() if v is not None)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


def _with_opening(labels, m, enc, dec, k):
    from fastsynth.data.codec import labels_to_channels
    from fastsynth.sampling.masks import decode_labels

    out = []
    for i in range(0, len(labels), 64):
        lab = labels[i:i + 64]
        rec = decode_labels(dec(enc(labels_to_channels(lab, m))), 0.0, k)
        a, b = lab > 0, rec > 0
        inter, union = (a & b).flatten(1).sum(1).float(), (a | b).flatten(1).sum(1).float()
        out.append(torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)))
    return torch.cat(out)


if __name__ == "__main__":
    main()
