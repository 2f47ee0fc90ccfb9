"""Where does the residual high-frequency noise of generated images come from?

For each model, the same N seeds (unconditional pairs) go through several samplers; every output is measured
with ``fastsynth.metrics.texture`` (adjacent-pixel difference on the 0-255 scale, spectral power above 0.25
cycles/pixel, and the 2x2 patch-boundary ratio of the pixel-unshuffled network) against the real training images:
- samplers: the default (UniPC x6), DDIM x50 and ancestral DDPM x1000 (``--ddpm``): does the solver add it?
- the trajectory of DDIM x50: the grain of the network's x0 prediction at each step: does it appear only in the
  last steps (a last-step problem) or is it in every prediction (the model)?
- fp16 storage: for a model stored in fp32, the same weights rounded to fp16 and back.
- EMA: for a training run folder, its raw (non-EMA) weights from ``checkpoint/`` next to the EMA model.

    python benchmarks/noise_diagnosis.py --models bundled,runs/armA-v --n 16 --ddpm \
        --out benchmarks/results/noise_diagnosis_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="bundled", help="comma list of model folders, run folders or 'bundled'")
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared/data/kvasir-seg"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--samplers", default="unipc:6,ddim:50")
    ap.add_argument("--ddpm", action="store_true", help="also ancestral DDPM with 1000 steps (slow)")
    ap.add_argument("--out", default="benchmarks/results/noise_diagnosis_cpu.json")
    a = ap.parse_args()

    from fastsynth.bench import environment
    from fastsynth.config import GenerateConfig
    from fastsynth.data import load_pairs, scan_pairs
    from fastsynth.metrics.texture import adjacent_diff, hf_power_fraction, patch_boundary_ratio
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.pipeline import Conditioning, row_seed, sample_pairs
    from fastsynth.sampling import make_scheduler, opening_size
    from fastsynth.sampling.samplers import to_x0_eps

    def grain(images_u8) -> dict:
        return {"adjacent_diff": round(adjacent_diff(images_u8), 3),
                "hf_power_fraction": round(hf_power_fraction(images_u8), 5),
                "patch_boundary_ratio": round(patch_boundary_ratio(images_u8), 4)}

    records: dict = {"environment": environment(torch.device("cpu")), "n": a.n, "models": {}}
    first = resolve_model_dir(a.models.split(",")[0] if a.models.split(",")[0] != "bundled" else None)
    split = json.loads((first / "split.json").read_text())
    net0, _ = load_model(first)
    res = net0.config.resolution
    _, real = load_pairs(scan_pairs(a.real), res, split["train"])
    records["real_train"] = grain(real[:, :3].transpose(0, 2, 3, 1))
    print("real:", records["real_train"])
    cond = Conditioning("pairs", [], None, "")
    idx = np.arange(a.n)
    seeds = np.array([row_seed(0, i) for i in idx], np.int64)
    opening = opening_size(res, GenerateConfig().opening_px_at_256)

    def run(net, sampler: str, steps: int, capture: list | None = None) -> np.ndarray:
        c = net.config
        sched = make_scheduler(sampler, c.num_train_timesteps, c.beta_schedule, c.prediction_type)
        ac = sched.alphas_cumprod.float()

        def fn(x, t, cond_):
            out = net(x, t, cond_)
            if capture is not None:
                x0, _ = to_x0_eps(out, x, ac[t].view(-1, 1, 1, 1), c.prediction_type)
                img = ((x0[:, :3].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                capture.append({"t": int(t[0]), **grain(img)})
            return out

        cfg = GenerateConfig(sampler=sampler, steps=steps, batch_size=a.n, redraw=False)
        im, _, _ = sample_pairs(fn, sched, cfg, cond, idx, seeds, res, 0, opening, torch.device("cpu"))
        return im

    for spec in a.models.split(","):
        mdir = resolve_model_dir(None if spec == "bundled" else spec)
        net, meta = load_model(mdir)
        rec: dict = {"path": spec, "steps_trained": meta.get("training", {}).get("steps_done"), "samplers": {}}
        plist = [s.split(":") for s in a.samplers.split(",")] + ([["ddpm", "1000"]] if a.ddpm else [])
        for sampler, steps in plist:
            t0 = time.perf_counter()
            rec["samplers"][f"{sampler}:{steps}"] = grain(run(net, sampler, int(steps)))
            print(spec, sampler, steps, rec["samplers"][f"{sampler}:{steps}"], f"{time.perf_counter() - t0:.0f}s")
        traj: list = []
        run(net, "ddim", 50, traj)
        rec["ddim50_x0_trajectory"] = traj[::5] + [traj[-1]]
        from safetensors import safe_open

        with safe_open(str(mdir / "model.safetensors"), "pt") as f:
            dtype = f.get_tensor(next(iter(f.keys()))).dtype
        rec["stored_dtype"] = str(dtype)
        if dtype == torch.float32:  # does fp16 storage change the samples?
            half = copy.deepcopy(net)
            for p in half.parameters():
                p.data = p.data.half().float()
            ref_im = run(net, "unipc", 6)
            h_im = run(half, "unipc", 6)
            rec["fp16_storage"] = {**grain(h_im), "max_abs_pixel_diff": int(np.abs(ref_im.astype(int) - h_im).max()),
                                   "mean_abs_pixel_diff": float(np.abs(ref_im.astype(int) - h_im).mean())}
        raw = Path(spec) / "checkpoint"
        if spec != "bundled" and raw.is_dir():  # a run folder: its raw weights beside the EMA
            from safetensors.torch import load_file

            from fastsynth.training.checkpoint import latest_checkpoint

            ck = latest_checkpoint(raw)
            if ck is not None:
                rnet = copy.deepcopy(net)
                rnet.unet.load_state_dict(load_file(str(ck / "model.safetensors")))
                rec["raw_weights_unipc6"] = grain(run(rnet, "unipc", 6))
        records["models"][spec] = rec
        print(json.dumps({k: v for k, v in rec.items() if k != "ddim50_x0_trajectory"}, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
