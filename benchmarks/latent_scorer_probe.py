"""Can a segmenter on the latent grid stand in for the pixel filter of a latent model, so the decoder runs only on
kept pairs? Trains a small segmenter on the model's normalised training latents (its training images encoded, both
flips), then scores the same unfiltered candidates with it and with the model's pixel filter segmenter.

    python benchmarks/latent_scorer_probe.py --model bundled-256 --work /tmp/ls --n 1024 [--json FILE]

Prints one JSON: the latent segmenter's Dice on the held-out real images beside the pixel segmenter's, the rank
correlation of the two agreement scores over the candidates, and how the kept sets overlap at equal acceptance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def encode_split(space, modality, arr, flips: bool, bs: int = 16):
    from fastsynth.data.codec import images_to_tensor

    zs, ms = [], []
    for i in range(0, len(arr), bs):
        im = images_to_tensor(arr[i:i + bs, :3], modality)
        mk = torch.from_numpy(arr[i:i + bs, 3].copy())
        for h in ([False, True] if flips else [False]):
            x = im.flip(-1) if h else im
            zs.append(space.encode_images(x))
            ms.append(mk.flip(-1) if h else mk)
    return torch.cat(zs).float(), torch.cat(ms)


def build_seg(width: int = 64):
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name="resnet18", encoder_weights=None, encoder_depth=3, in_channels=32, classes=1,
                    decoder_channels=(width, width // 2, width // 4))


def mask_at(m_u8: torch.Tensor, size: int) -> torch.Tensor:
    return (F.interpolate(m_u8[:, None].float() / 255, size=(size, size), mode="area") >= 0.5).float()


def seg_logits(net, z, size: int):
    return F.interpolate(net(z), size=(size, size), mode="bilinear", align_corners=False)


def dice(pred: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    inter = (pred & tgt).sum((1, 2, 3) if pred.ndim == 4 else (1, 2))
    tot = pred.sum((1, 2, 3) if pred.ndim == 4 else (1, 2)) + tgt.sum((1, 2, 3) if tgt.ndim == 4 else (1, 2))
    return np.where(tot == 0, 1.0, 2 * inter / np.maximum(tot, 1))


@torch.no_grad()
def predict(net, z, size: int, bs: int = 64) -> np.ndarray:
    net.eval()
    out = [(seg_logits(net, z[i:i + bs], size) > 0).numpy() for i in range(0, len(z), bs)]
    return np.concatenate(out)[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled-256")
    ap.add_argument("--work", required=True)
    ap.add_argument("--n", type=int, default=1024, help="unfiltered candidates to score")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--size", type=int, default=128, help="where agreement is scored (the pixel filter's)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from safetensors.torch import load_file, save_file

    from fastsynth.data.modality import modality_from_config
    from fastsynth.metrics.io import load_real, load_synthetic, resolve_real
    from fastsynth.models import load_model, resolve_model_dir
    from fastsynth.models.latent import LatentSpace, model_space

    net_d, meta = load_model(args.model)
    mdir = resolve_model_dir(args.model)
    space = model_space(net_d.config, model_dir=mdir)
    modality = modality_from_config(net_d.config)
    res = net_d.config.resolution
    out = {"model": args.model, "resolution": res, "scored_at": args.size}

    lat = work / "latents.safetensors"
    if not lat.exists():
        t0 = time.perf_counter()
        src, rset = resolve_real(args.model)
        _, tr = load_real(src, res, rset.train_stems)
        _, te = load_real(src, res, rset.test_stems)
        ztr, mtr = encode_split(space, modality, tr, flips=True)
        zte, mte = encode_split(space, modality, te, flips=False)
        save_file({k: v.contiguous() for k, v in dict(ztr=ztr, mtr=mtr, zte=zte, mte=mte, ite=torch.from_numpy(te[:, :3].copy())).items()},
                  str(lat))
        out["encode_s"] = round(time.perf_counter() - t0, 1)
    d = load_file(str(lat))
    ztr, mtr, zte, mte = d["ztr"], d["mtr"], d["zte"], d["mte"]
    out["train_latents"], out["test_images"] = len(ztr), len(zte)

    segp = work / "latent_seg.safetensors"
    torch.manual_seed(0)
    seg = build_seg()
    if not segp.exists():
        t0 = time.perf_counter()
        opt = torch.optim.AdamW(seg.parameters(), lr=1e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=args.steps, pct_start=0.05)
        tgt_all = mask_at(mtr, args.size)
        g = torch.Generator().manual_seed(0)
        seg.train()
        for step in range(args.steps):
            idx = torch.randint(0, len(ztr), (32,), generator=g)
            z, t = ztr[idx], tgt_all[idx]
            if torch.rand(1, generator=g).item() < 0.5:  # vertical flips in the grid (horizontal ones are encoded)
                z, t = z.flip(-2), t.flip(-2)
            lg = seg_logits(seg, z, args.size)
            p = torch.sigmoid(lg)
            loss = F.binary_cross_entropy_with_logits(lg, t) + \
                (1 - (2 * (p * t).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % 250 == 0:
                print(f"step {step} loss {loss.item():.3f}", file=sys.stderr)
        save_file(seg.state_dict(), str(segp))
        out["train_s"] = round(time.perf_counter() - t0, 1)
    seg.load_state_dict(load_file(str(segp)))
    seg.eval()

    # held-out real images: the latent segmenter against the pixel filter segmenter
    from fastsynth.runtime.agreement import AgreementScorer

    filt = json.loads((mdir / "fastsynth.json").read_text())["generate_defaults"]["pairs"]
    pix = AgreementScorer(mdir / filt["keep_agreeing"], "cpu", "onnx")
    tgt_te = mask_at(mte, args.size).numpy()[:, 0] > 0
    out["heldout_dice_latent"] = float(dice(predict(seg, zte, args.size), tgt_te).mean())
    ite = d["ite"].numpy().transpose(0, 2, 3, 1)
    out["heldout_dice_pixel"] = float(pix(ite, mte.numpy()).mean())

    # unfiltered candidates, with the latents the decoder saw
    cand = work / "cand"
    zfile = work / "cand_latents.safetensors"
    if not zfile.exists():
        from fastsynth.config import GenerateConfig
        from fastsynth.pipeline import generate

        seen = []
        orig = LatentSpace.decode_images

        def capture(self, z):
            seen.append(z.detach().float().cpu().clone())
            return orig(self, z)

        LatentSpace.decode_images = capture
        t0 = time.perf_counter()
        generate(GenerateConfig(n=args.n, keep_agreeing="none", batch_size=16), cand, model=args.model,
                 progress=False)
        LatentSpace.decode_images = orig
        out["generate_s"] = round(time.perf_counter() - t0, 1)
        save_file({"z": torch.cat(seen)}, str(zfile))
    zc = load_file(str(zfile))["z"]
    syn = load_synthetic(cand)
    ims, mks = syn.images, syn.masks  # sorted by row index: the order the decoder saw them in
    assert len(ims) == len(zc), (len(ims), len(zc))
    t0 = time.perf_counter()
    a_pix = pix(ims, mks)
    out["pixel_score_s_per_image"] = (time.perf_counter() - t0) / len(ims)
    t0 = time.perf_counter()
    pred = predict(seg, zc, args.size)
    out["latent_score_s_per_image"] = (time.perf_counter() - t0) / len(ims)
    mt = mask_at(torch.from_numpy(mks), args.size).numpy()[:, 0] > 0
    a_lat = dice(pred, mt)

    from scipy.stats import pearsonr, spearmanr

    out["spearman"] = float(spearmanr(a_pix, a_lat)[0])
    out["pearson"] = float(pearsonr(a_pix, a_lat)[0])
    thr = filt["min_agreement"]
    kp = a_pix >= thr
    out["pixel_threshold"], out["pixel_kept_fraction"] = thr, float(kp.mean())
    lt = float(np.quantile(a_lat, 1 - kp.mean()))  # the latent threshold that keeps as many
    kl = a_lat >= lt
    out["latent_threshold_equal_acceptance"], out["latent_kept_fraction"] = lt, float(kl.mean())
    out["kept_overlap_jaccard"] = float((kp & kl).sum() / (kp | kl).sum())
    out["pixel_agreement_mean"] = {"all": float(a_pix.mean()), "pixel_kept": float(a_pix[kp].mean()),
                                   "latent_kept": float(a_pix[kl].mean())}
    for q in (0.25, 0.5, 0.75):
        t = float(np.quantile(a_lat, q))
        k = a_lat >= t
        out[f"latent_keep_{1 - q:.2f}"] = {"threshold": t, "pixel_agreement_mean": float(a_pix[k].mean()),
                                           "share_pixel_kept": float(kp[k].mean())}
    np.savez(work / "scores.npz", pixel=a_pix, latent=a_lat)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
