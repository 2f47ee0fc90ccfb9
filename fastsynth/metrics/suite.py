"""evaluate(): every metric of a synthetic dataset against a real set, as one JSON-able dict + plots.

Reads only folders (the dataset folder, the real data or training run); the CLI is a thin wrapper.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FastsynthError

METRICS = ("fid", "msssim", "masks", "memorization", "hf", "agreement")
DEFAULT_METRICS = ("fid", "msssim", "masks", "memorization", "hf")  # "all"; agreement trains segmenters (eval extra)


def parse_metrics(spec: str | list | None) -> list[str]:
    if spec is None or spec == "all":
        return list(DEFAULT_METRICS)
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    items = ["fid" if s == "kid" else s for s in items]
    bad = [s for s in items if s not in METRICS]
    if bad:
        raise FastsynthError(f"--metrics: unknown {bad}; choose from {', '.join(METRICS)} (or 'all')")
    return list(dict.fromkeys(items))


def evaluate(synth_dir: str | os.PathLike, real: str | os.PathLike, tests: list | None = None,
             metrics: str | list | None = None, out_dir: str | os.PathLike | None = None,
             inception_weights: str | None = None, extractor=None, fid_reference: str = "test",
             max_synthetic: int | None = None, msssim_pairs: int = 1000, memorization_method: str = "ssim",
             downstream: dict | None = None, segmenter: dict | None = None, seed: int = 0, device: str = "cpu", use_cache: bool = True,
             command: str = "", log: Callable[[str], None] | None = None, progress: bool = False) -> dict:
    """Compute the requested metrics; write plots (and segmenters, for the downstream benchmark) to out_dir.

    ``downstream``: options of the downstream benchmark (None: not run); ``segmenter``: options of the real-trained
    segmenters behind the ``agreement`` metric when the benchmark is not run (defaults: SegConfig's)."""
    from .. import __version__
    from ..data import load_pairs
    from ..data.pairs import resize_pairs
    from . import io as eio
    from . import masks as mstats
    from . import plots

    say = log or (lambda s: None)
    wanted = parse_metrics(metrics)
    t0 = time.perf_counter()
    synth = eio.load_synthetic(synth_dir, limit=max_synthetic, seed=seed)
    h, w = synth.images.shape[1:3]
    if h != w:
        raise FastsynthError(f"{synth_dir}: images are {w}x{h}; evaluation expects square images")
    res = h
    src, rs = eio.resolve_real(real)
    if fid_reference not in ("test", "train", "all"):
        raise FastsynthError(f"--fid-reference {fid_reference!r}: choose test, train or all")
    say(f"loading real images from {rs.root} at {res}x{res}")
    modality = synth.modality  # real images are read as the model's data, and compared in the same 8-bit view
    _, train_arr = eio.load_real(src, res, rs.train_stems, modality)
    test_arr = eio.load_real(src, res, rs.test_stems, modality)[1] if rs.test_stems else None
    ref_kind = fid_reference if (fid_reference != "test" or test_arr is not None) else "train"
    if fid_reference == "test" and test_arr is None:
        rs.notes.append("no held-out images: the metrics' real reference is the training set")
    ref = {"test": test_arr, "train": train_arr,
           "all": train_arr if test_arr is None else np.concatenate([train_arr, test_arr])}[ref_kind]
    extra_tests = {}
    for t in tests or []:
        name = Path(t).name or str(t)
        extra_tests[name] = eio.load_test_set(t, res, modality)[1]

    out = Path(out_dir) if out_dir else Path(synth_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "fastsynth_version": __version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "command": command, "synthetic_dir": str(synth_dir),
        "n_synthetic": int(len(synth.images)), "resolution": res, "seed": seed, "metrics": wanted,
        "synthetic_manifest": {k: synth.manifest.get(k) for k in ("mode", "sampler", "steps", "seed", "n",
                                                                  "model_sha256", "complete", "redraw",
                                                                  "guidance", "guidance_interval",
                                                                  "max_components", "condition_at")},
        "reference": {"root": rs.root, "split_file": rs.split_from, "fid_reference": ref_kind,
                      "n_reference": int(len(ref)), "n_train": int(len(train_arr)),
                      "n_heldout": 0 if test_arr is None else int(len(test_arr)),
                      "resize": f"centre crop + resize to {res}x{res} (the synthetic resolution)"},
        "notes": list(rs.notes), "environment": {"python": platform.python_version(), "device": device},
    }
    if not modality.is_default:
        results["data"] = modality.to_dict()
        if modality.channels == 1:
            results["notes"].append("greyscale images: the image metrics (FID/KID, MS-SSIM, memorization, hf) see "
                                    "them replicated to three channels" + (", 16-bit values mapped to 8 bits "
                                    "through the model's intensity window" if modality.bits == 16 else ""))
    if not synth.manifest.get("complete", False):
        results["notes"].append("the synthetic dataset is incomplete (generation not finished)")
    fg = (lambda m: m) if modality.binary else (lambda m: np.where(m > 0, 255, 0).astype(np.uint8))  # contours
    plots.sample_grid(synth.images, fg(synth.masks), out / "samples_synthetic.png")
    plots.sample_grid(ref[:, :3].transpose(0, 2, 3, 1), fg(ref[:, 3]), out / "samples_real.png")

    feats_s = None
    if "fid" in wanted:
        from . import fid

        ext = extractor or fid.InceptionFeatures(inception_weights, device=device)
        say(f"FID/KID: Inception features of {len(synth.images)} synthetic and {len(ref)} real images")
        feats_r, cache_info = fid.reference_features(ref[:, :3], ext, use_cache=use_cache)
        feats_s = ext(synth.images)
        fk = fid.fid_kid(feats_s, feats_r, seed=seed)
        fk.update({"protocol": fid.RESIZE_MODE if getattr(ext, "resize", True) else "no-resize",
                   "extractor": getattr(ext, "weights_hash", "?"), "weights_file": getattr(ext, "weights_path", None),
                   "reference_cache": cache_info})
        results["fid_kid"] = fk
        results["notes"] += fk["warnings"]
    if "msssim" in wanted:
        from .msssim import pairwise_msssim

        say("MS-SSIM diversity")
        results["msssim"] = {"synthetic": pairwise_msssim(synth.images, msssim_pairs, seed),
                             "real": pairwise_msssim(ref[:, :3], msssim_pairs, seed) if len(ref) > 1 else None}
    if "masks" in wanted:
        say("mask statistics")
        if modality.binary:
            ss, sr = mstats.mask_stats(synth.masks), mstats.mask_stats(ref[:, 3])
            results["masks"] = {"synthetic": mstats.summarize(ss), "real": mstats.summarize(sr),
                                "distance": mstats.compare(ss, sr, seed)}
        else:  # the foreground (any class) as the binary statistics, and every class on its own
            results["masks"] = mstats.label_map_report(synth.masks, ref[:, 3], modality.names, seed)
        plots.mask_histograms(results["masks"]["synthetic"], results["masks"]["real"], out / "mask_stats.png")
    if "memorization" in wanted:
        from .memorization import audit

        say(f"memorization audit against {len(train_arr)} training images")
        train_imgs = train_arr[:, :3].transpose(0, 2, 3, 1).copy()
        held = test_arr[:, :3].transpose(0, 2, 3, 1).copy() if test_arr is not None else None
        kw = {}
        if memorization_method == "features":
            if feats_s is None:
                raise FastsynthError("--memorization-method features needs the fid metric (Inception features)")
            kw = dict(synth_feats=feats_s, train_feats=ext(train_imgs),
                      heldout_feats=ext(held) if held is not None else None)
        mem = audit(synth.images, train_imgs, rs.train_stems, synth.index.tolist(), held, memorization_method, **kw)
        nearest = mem.pop("nearest")
        (out / "memorization.json").write_text(json.dumps(nearest) + "\n")
        mem["per_image_file"] = str(out / "memorization.json")
        results["memorization"] = mem
    if "hf" in wanted:
        from .texture import hf_energy_report

        say("high-frequency energy (residual noise)")
        results["hf"] = hf_energy_report(synth.images, train_arr[:, :3].transpose(0, 2, 3, 1))
    if downstream is not None or "agreement" in wanted:
        from .downstream import DEFAULT_PROTOCOLS, DEFAULT_SEEDS, LOW_DATA_N, SegConfig, run_benchmark

        d = dict(downstream if downstream is not None else (segmenter or {}))
        protocols = d.pop("protocols", DEFAULT_PROTOCOLS) if downstream is not None else ("real",)
        d.pop("protocols", None)
        low_n = d.pop("low_data_n", LOW_DATA_N)
        low_groups = tuple(d.pop("low_data_groups", None) or ())
        backend = d.pop("backend", "eager")
        drop_leaking = d.pop("drop_leaking", False)
        n_seeds = d.pop("seeds", DEFAULT_SEEDS)
        seg_res = d.pop("resolution", None) or res
        cfg = SegConfig(resolution=seg_res, seed=seed, **d,
                        **({} if modality.binary else {"class_names": tuple(modality.names)}))
        seg_train, seg_test, seg_extra = train_arr, test_arr, extra_tests
        if seg_res != res:  # the judge at its own resolution: real data read at it, synthetic pairs resized to it
            say(f"segmenters at {seg_res}x{seg_res}: real images read at it, the {res}x{res} synthetic pairs resized")
            seg_train = eio.load_real(src, seg_res, rs.train_stems, modality)[1]
            seg_test = eio.load_real(src, seg_res, rs.test_stems, modality)[1] if rs.test_stems else None
            seg_extra = {Path(t).name or str(t): eio.load_test_set(t, seg_res, modality)[1] for t in tests or []}
            results["reference"]["segmenter_resize"] = (f"segmenters at {seg_res}x{seg_res}: synthetic pairs resized "
                                                        "(image bicubic, mask bilinear + threshold)")
        test_sets = ({"heldout": seg_test} if seg_test is not None else {}) | seg_extra
        synth4 = np.concatenate([synth.images.transpose(0, 3, 1, 2), synth.masks[:, None]], 1)
        if seg_res != res:
            synth4 = resize_pairs(synth4, seg_res, modality.num_classes)
        sources = synth.source
        if downstream is not None and any(p != "real" for p in protocols):
            # held-out data must not reach the segmenters' training
            from .leakage import check_leakage, split_fingerprint

            keep = check_leakage(synth.source, synth.manifest, rs.test_stems,
                                 split_fingerprint(rs.split_test) if rs.split_from else None, drop_leaking, say)
            synth4, sources = synth4[keep], [s for s, k in zip(synth.source, keep) if k]
            results["n_dropped_leaking"] = int((~keep).sum())
        bench = run_benchmark(cfg, seg_train, rs.train_stems, synth4, sources, test_sets, protocols, low_n,
                              device=device, save_dir=out / "segmenters" if downstream is not None else None,
                              log=say, backend=backend, seeds=n_seeds, use_cache=use_cache,
                              progress_factory=_seg_bar if progress else None, low_data_groups=low_groups,
                              groups=eio.real_groups(rs) if low_groups else None)
        if "agreement" in bench:
            results["agreement"] = bench.pop("agreement")
        if downstream is not None:
            results["downstream"] = bench
    results["seconds"] = round(time.perf_counter() - t0, 1)
    _bars(results, out)
    return results


def _seg_bar(name: str):
    from tqdm.auto import tqdm

    return lambda it: tqdm(it, desc=f"segmenter '{name}'", unit="step", mininterval=2.0)


def _bars(results: dict, out: Path) -> None:
    from . import plots

    vals = {}
    if "fid_kid" in results:
        vals["FID"] = results["fid_kid"]["fid"]
    if "msssim" in results:
        vals["MS-SSIM synthetic"] = results["msssim"]["synthetic"]["mean"]
        if results["msssim"].get("real"):
            vals["MS-SSIM real"] = results["msssim"]["real"]["mean"]
    if vals:
        plots.bar_chart(vals, out / "metrics.png", "image metrics")
    ds = results.get("downstream")
    if ds:
        dv = {f"{p} / {t}": s["dice"] for p, r in ds["runs"].items() for t, s in r["test"].items()}
        plots.bar_chart(dv, out / "downstream_dice.png", "downstream Dice (per-image mean)", vmax=1.0)


def text_table(results: dict) -> str:
    rows = [("metric", "synthetic", "real")]
    fk = results.get("fid_kid")
    if fk:
        rows.append(("FID", f"{fk['fid']:.2f}", ""))
        rows.append(("KID", f"{fk['kid']:.5f} ± {fk['kid_std']:.5f}", ""))
    ms = results.get("msssim")
    if ms:
        rows.append(("MS-SSIM (diversity)", f"{ms['synthetic']['mean']:.4f}",
                     f"{ms['real']['mean']:.4f}" if ms.get("real") else ""))
    mk = results.get("masks")
    if mk:
        rows.append(("mask area fraction", f"{mk['synthetic']['area_fraction_mean']:.4f}",
                     f"{mk['real']['area_fraction_mean']:.4f}"))
        rows.append(("components (mean)", f"{mk['synthetic']['components_mean']:.2f}",
                     f"{mk['real']['components_mean']:.2f}"))
    for name, pc in (mk or {}).get("per_class", {}).items():
        rows.append((f"  {name}: area fraction / components", f"{pc['synthetic']['area_fraction_mean']:.4f} / "
                     f"{pc['synthetic']['components_mean']:.2f}", f"{pc['real']['area_fraction_mean']:.4f} / "
                     f"{pc['real']['components_mean']:.2f}"))
    mem = results.get("memorization")
    if mem:
        rows.append(("near-copies", f"{mem['n_flagged']} / {mem['n_synthetic']}", ""))
    hf = results.get("hf")
    if hf:
        rows.append(("HF energy (adjacent-pixel diff)", f"{hf['synthetic']:.2f}", f"{hf['real']:.2f}"))
    ag = results.get("agreement")
    if ag:
        rows.append(("label agreement Dice", f"{ag['dice']:.3f} ± {ag['dice_seed_std']:.3f}",
                     f"{ag['real_heldout_dice']:.3f} (held-out)" if "real_heldout_dice" in ag else ""))
        for name, v in ag.get("dice_per_class", {}).items():
            rows.append((f"  {name}", f"{v:.3f}", ""))
    ds = results.get("downstream")
    if ds:
        for p, r in ds["runs"].items():
            for t, s in r["test"].items():
                rows.append((f"Dice {p} on {t}", f"{s['dice']:.4f} ± {s['dice_seed_std']:.4f}",
                             f"({s['n_seeds']} seeds)"))
                for name, v in s.get("per_class", {}).items():
                    rows.append((f"  {name}", f"{v['dice']:.4f}", f"IoU {v['iou']:.4f}"))
        for c in ds.get("comparisons", []):
            rows.append((f"{c['candidate']} vs {c['baseline']} ({c['test']})",
                         f"{c['dice_delta']:+.4f} (spread {c['spread']:.4f})", c["verdict"]))
    wa = max(len(r[0]) for r in rows)
    wb = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{wa}}  {b:<{wb}}  {c}".rstrip() for a, b, c in rows)
