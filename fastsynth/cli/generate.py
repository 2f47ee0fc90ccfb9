"""fastsynth generate: a synthetic image+mask dataset from a model (the bundled one by default)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    from .common import HelpFormatter
    from ..config import DEFAULT_CASCADE_STRENGTH, DEFAULT_MIN_AGREEMENT, DEFAULT_REDRAW_GUIDANCE, DEFAULT_REDRAW_GUIDANCE_INTERVAL, FORMATS, \
        MODES, GenerateConfig
    from ..runtime import BACKENDS, PRECISIONS
    from ..sampling import DEFAULT_STEPS, SAMPLER_NAMES

    d = GenerateConfig()
    p = sub.add_parser(
        "generate", help="generate a synthetic image+mask dataset",
        formatter_class=HelpFormatter,
        description="Generate N image+mask pairs into a Hugging Face dataset folder (parquet shards + card). "
                    "Re-running the same command resumes an interrupted run; a larger --n extends it. "
                    "Several GPUs: accelerate launch -m fastsynth generate ... "
                    "A model may carry its own measured generation defaults per mode (sampler, steps, redraw, "
                    "condition-at, guidance): they fill whatever you leave open, before the global defaults below; "
                    "`fastsynth info --model M` prints the effective settings of each mode.")
    p.add_argument("--n", type=int, default=d.n, help="number of pairs")
    p.add_argument("--model", default=None, help="model folder or training run folder (default: the bundled polyp model; bundled-fast: "
                        "its distilled 4-step student; bundled-ultrasound: greyscale fetal-head ultrasound; "
                        "bundled-hippocampus: 16-bit MRI, 3-class label maps; bundled-256: 256x256 polyp pairs from "
                        "the latent model, kept where the mask agrees with its real-data segmenter)")
    p.add_argument("--out", default=None, help="output folder (default: fastsynth-out/MODE)")
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="pairs: new image and mask; from-masks: images for given masks; "
                        "inpaint: a new polyp in each real image's dilated mask region")
    p.add_argument("--masks", default=None, help="folder of mask images (for --mode from-masks)")
    p.add_argument("--images", default=None, help="folder with images/ and masks/ (for --mode inpaint)")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=None,
                   help="unipc (UniPC), dpmpp (DPM-Solver++ 2M), ddim, ddpm (the slow reference), distilled (the "
                        "grid of a `fastsynth distill` student) (default: the model's own, else unipc)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: the model's own for its sampler, else per sampler: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per network call")
    p.add_argument("--seed", type=int, default=d.seed, help="base seed (pair i uses a seed derived from it and i)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend, help="runtime backend")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="network precision (auto: bf16/fp16 on GPU; on CPU fp32, or int8 / bf16 where its accuracy "
                        "gate accepted it and `fastsynth bench --choose` measured it faster; int8: the gated, "
                        "statically quantised graph with --backend onnx or openvino, CPU; bf16 on CPU: fastest with "
                        "--backend openvino on CPUs with AVX512_BF16 or AMX)")
    p.add_argument("--format", choices=FORMATS, default=d.format,
                   help="parquet shards (a Hugging Face dataset); images/ + masks/ PNG folders; nnunet: an "
                        "nnU-Net v2 raw dataset (imagesTr/ + labelsTr/ + dataset.json); nifti: 2D NIfTI image + label "
                        "files with the training volumes' pixel spacing (the medical extra)")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="rows per shard (the unit of resume)")
    p.add_argument("--opening-px", type=int, default=d.opening_px_at_256,
                   help="mask opening kernel at 256x256 (scaled with resolution); 0 turns it off")
    p.add_argument("--mask-threshold", type=float, default=d.mask_threshold,
                   help="threshold of the mask channel in model space ([-1, 1]; 0 = the midpoint)")
    p.add_argument("--dilate-px", type=int, default=d.inpaint_dilate_px_at_256,
                   help="inpainting: dilation of the real mask at 256x256 (scaled with resolution)")
    p.add_argument("--guidance", type=float, default=d.guidance,
                   help="classifier-free guidance scale of the conditional passes (from-masks, inpaint, the redraw); "
                        "1 = off; costs a second network evaluation per step (default: "
                        f"{DEFAULT_REDRAW_GUIDANCE:g} for the redraw of pairs, 1 for from-masks / inpaint)")
    p.add_argument("--guidance-interval", type=_interval, default=d.guidance_interval, metavar="LO,HI",
                   help="guide only the steps whose noise level sigma = sqrt((1-a)/a) is in (LO, HI] "
                        "(Kynkäänniemi et al. 2024); the other steps cost one evaluation, not two; all = every step "
                        f"(default: {','.join(f'{v:g}' for v in DEFAULT_REDRAW_GUIDANCE_INTERVAL)} for the guided "
                        "redraw of pairs, every step for from-masks / inpaint)")
    p.add_argument("--redraw", action=argparse.BooleanOptionalAction, default=d.redraw,
                   help="pairs: redraw each image from its generated mask in a second, mask-conditioned, guided "
                        "pass (default: the model's own; else on for pairs, unless --condition-at is given; "
                        "--no-redraw: one pass)")
    p.add_argument("--max-components", type=int, default=d.max_components,
                   help="pairs with redraw: keep the N largest connected regions of each generated mask before "
                        "its image is redrawn (0 = keep all)")
    p.add_argument("--condition-at", type=float, default=d.condition_at, metavar="SIGMA",
                   help="pairs, one pass: from the first step whose noise level sigma = sqrt((1-a)/a) is at or below "
                        "SIGMA, fix the mask (decoded from the network's prediction) and finish the image "
                        "conditioned on it, guided by --guidance; no second pass; refused where no step of the "
                        "sampler reaches SIGMA (default: the model's own, else off; 0 = off; replaces --redraw)")
    p.add_argument("--autoguide", default=d.autoguide, metavar="MODEL",
                   help="pairs: guide the first (unconditional) pass by a weaker model of the same network, e.g. an "
                        "earlier checkpoint (autoguidance, Karras et al. 2024); two network evaluations per step")
    p.add_argument("--autoguide-scale", type=float, default=d.autoguide_scale,
                   help="strength of --autoguide: weak + W (model - weak); 1 = off")
    p.add_argument("--base", default=d.base, metavar="MODEL",
                   help="pairs: a cascade: this lower-resolution model (e.g. bundled) draws each pair with its own "
                        "defaults, and the model re-renders it at its resolution: the mask upsampled and kept, the "
                        "image upsampled, noised part-way and denoised for that mask (default: the model's own, else "
                        "off; none = off)")
    p.add_argument("--strength", type=float, default=d.strength,
                   help="with --base: the fraction of the sampler's steps that re-render each upsampled pair (low: "
                        "the base image with new detail; 1: a new image for the base mask) (default: the model's own, "
                        f"else {DEFAULT_CASCADE_STRENGTH:g})")
    p.add_argument("--keep-agreeing", default=d.keep_agreeing, metavar="SEGMENTER",
                   help="pairs: keep only the pairs whose generated mask agrees with this segmenter (a folder saved by "
                        "`fastsynth evaluate --downstream`, trained on real data) at Dice >= --min-agreement, drawing "
                        "more candidates until --n pairs are kept; scored at the segmenter's resolution, an "
                        "`agreement` column added (default: the model's own, else off; none = off)")
    p.add_argument("--min-agreement", type=float, default=d.min_agreement, metavar="DICE",
                   help="the threshold of --keep-agreeing (default: the model's own with its segmenter, else "
                        f"{DEFAULT_MIN_AGREEMENT:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-mixed-precision", action="store_true",
                   help="resume a dataset started in another runtime precision (e.g. bf16 on one machine, fp32 on "
                        "another) instead of refusing; each shard's backend and precision go into the manifest")
    p.set_defaults(func=run)


def _interval(text: str) -> tuple[float, ...]:
    if text.strip().lower() == "all":
        return ()
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected two numbers LO,HI, e.g. 0.28,5.42, or all") from None
    return lo, hi


def run(args) -> int:
    from .common import invoked_command
    from ..config import GenerateConfig
    from ..pipeline import default_out_dir, generate

    cfg = GenerateConfig(n=args.n, mode=args.mode, sampler=args.sampler, steps=args.steps,
                         batch_size=args.batch_size, seed=args.seed, shard_size=args.shard_size,
                         opening_px_at_256=args.opening_px, mask_threshold=args.mask_threshold,
                         inpaint_dilate_px_at_256=args.dilate_px, format=args.format, precision=args.precision,
                         backend=args.backend, guidance=args.guidance, redraw=args.redraw,
                         max_components=args.max_components, guidance_interval=args.guidance_interval,
                         autoguide=args.autoguide, autoguide_scale=args.autoguide_scale,
                         condition_at=args.condition_at, base=args.base, strength=args.strength,
                         keep_agreeing=args.keep_agreeing, min_agreement=args.min_agreement)
    out = args.out or str(default_out_dir(args.mode))
    if args.out is None:
        print(f"writing to {out} (no --out given)", file=sys.stderr)
    command = invoked_command("generate")
    s = generate(cfg, out, model=args.model, masks=args.masks, images=args.images, device=args.device,
                 progress=not args.no_progress, command=command,
                 allow_mixed_precision=args.allow_mixed_precision)
    rate = f"{s['pairs_per_s']:.1f} pairs/s" if s["pairs_per_s"] else "nothing left to generate"
    state = "complete" if s["complete"] else "incomplete (other processes still writing)"
    # drawn in whole batches: the last batch's candidates past the shard's last kept pair are drawn, never needed
    # (the card's acceptance counts candidates up to each shard's last kept pair)
    kept = f" (filtered: {s['candidates']} candidates drawn in batches)" if s.get("candidates") else ""
    print(f"generated {s['pairs']} pairs{kept} in {s['seconds']:.1f} s ({rate}) on {s['device']} ({s['backend']}); "
          f"dataset {state}: {s['total']} pairs in {s['out']}")
    return 0
