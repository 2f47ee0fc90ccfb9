"""The dataset card (README.md): YAML metadata between ``---`` lines, then markdown.

``update_card`` writes evaluation results twice: machine-readable under the ``fastsynth_evaluation`` key of the
YAML metadata, human-readable as a table between markers in the text. Re-running replaces both (idempotent).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FastsynthError
from ..utils import write_atomic

from ..dataset.card import END, EVAL_KEY, START, join_card, split_card  # noqa: F401 (the card format)


def _fmt(v, nd=4):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def card_metadata(results: dict) -> dict:
    """The numbers (and the settings that produced them) for the YAML metadata."""
    out: dict = {"fastsynth_version": results.get("fastsynth_version"), "date": results.get("date"),
                 "command": results.get("command", ""), "reference": results.get("reference", {})}
    fk = results.get("fid_kid")
    if fk:
        out["fid"] = round(fk["fid"], 4)
        out["kid"] = round(fk["kid"], 6)
        out["kid_std"] = round(fk["kid_std"], 6)
        out["fid_protocol"] = fk.get("protocol")
        out["fid_n_synthetic"], out["fid_n_real"] = fk["n_synthetic"], fk["n_real"]
    ms = results.get("msssim")
    if ms:
        out["msssim_synthetic"] = round(ms["synthetic"]["mean"], 4)
        if ms.get("real"):
            out["msssim_real"] = round(ms["real"]["mean"], 4)
        out["msssim_pairs"] = ms["synthetic"]["n_pairs"]
        out["msssim_scales"] = ms["synthetic"]["scales"]
    mk = results.get("masks")
    if mk and mk.get("distance"):
        out["mask_area_wasserstein"] = round(mk["distance"]["area_fraction_wasserstein"], 5)
        out["mask_components_tv"] = round(mk["distance"]["components_tv"], 5)
    mem = results.get("memorization")
    if mem:
        out["memorization_flagged"] = mem["n_flagged"]
        out["memorization_checked"] = mem["n_synthetic"]
        out["memorization_method"] = mem["method"]
        out["memorization_threshold"] = mem["threshold"]
    ds = results.get("downstream")
    if ds:
        st = ds["settings"]
        out["downstream"] = {
            "model": f"{st['arch']}/{st['encoder']}", "steps": st["steps"], "seed": st["seed"],
            "resolution": st["resolution"],
            "results": [{"protocol": p, "test_set": t, "dice": round(s["dice"], 4), "iou": round(s["iou"], 4)}
                        for p, r in ds["runs"].items() for t, s in r["test"].items()],
        }
    return out


def results_markdown(results: dict) -> str:
    lines = [START, "## Evaluation (fastsynth evaluate)", ""]
    ref = results.get("reference", {})
    lines.append(f"Real reference: `{ref.get('root', '?')}` ({ref.get('fid_reference', '?')} images: "
                 f"{ref.get('n_reference', '?')}); synthetic rows evaluated: {results.get('n_synthetic', '?')}.")
    lines += ["", "| metric | synthetic | real | notes |", "|---|---|---|---|"]
    fk = results.get("fid_kid")
    if fk:
        lines.append(f"| FID (clean-fid protocol) | {_fmt(fk['fid'], 2)} | | lower is better; "
                     f"{fk['n_synthetic']} vs {fk['n_real']} images |")
        lines.append(f"| KID | {_fmt(fk['kid'], 5)} ± {_fmt(fk['kid_std'], 5)} | | |")
    ms = results.get("msssim")
    if ms:
        lines.append(f"| MS-SSIM diversity | {_fmt(ms['synthetic']['mean'])} | "
                     f"{_fmt(ms['real']['mean']) if ms.get('real') else '–'} | lower = more diverse; "
                     f"{ms['synthetic']['n_pairs']} random pairs, {ms['synthetic']['scales']} scales |")
    mk = results.get("masks")
    if mk:
        s, r = mk["synthetic"], mk.get("real") or {}
        lines.append(f"| mask area fraction (mean) | {_fmt(s['area_fraction_mean'])} | "
                     f"{_fmt(r.get('area_fraction_mean'))} | Wasserstein "
                     f"{_fmt((mk.get('distance') or {}).get('area_fraction_wasserstein'))} |")
        lines.append(f"| connected components (mean) | {_fmt(s['components_mean'], 2)} | "
                     f"{_fmt(r.get('components_mean'), 2)} | |")
    mem = results.get("memorization")
    if mem:
        lines.append(f"| near-copies of training images | {mem['n_flagged']} / {mem['n_synthetic']} | | "
                     f"{mem['method']} similarity ≥ {mem['threshold']} to the nearest of {mem['n_train']} "
                     f"training images |")
    ds = results.get("downstream")
    if ds:
        st = ds["settings"]
        lines += ["", f"Downstream segmentation ({st['arch']}/{st['encoder']}, {st['steps']} steps, seed "
                      f"{st['seed']}, {st['resolution']}px; Dice/IoU per-image mean at threshold 0.5):", "",
                  "| protocol | test set | Dice | IoU |", "|---|---|---|---|"]
        for p, r in ds["runs"].items():
            for t, s in r["test"].items():
                lines.append(f"| {p} | {t} | {_fmt(s['dice'])} | {_fmt(s['iou'])} |")
        for t, s in ds.get("summary", {}).items():
            if s.get("synthetic_over_real_dice") is not None:
                lines.append(f"\nOn `{t}`: synthetic-only reaches {s['synthetic_over_real_dice']:.2f} of real-only "
                             f"Dice ({s['synthetic_over_real_iou']:.2f} in IoU).")
    if results.get("command"):
        lines += ["", f"Produced by: `{results['command']}`"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def update_card(readme: str | os.PathLike, results: dict) -> Path:
    """Write the results into the card's YAML metadata and text (replacing an earlier evaluation)."""
    p = Path(readme)
    text = p.read_text() if p.exists() else ""
    meta, body = split_card(text, str(p))
    meta[EVAL_KEY] = card_metadata(results)
    section = results_markdown(results)
    if START in body and END in body:
        a, b = body.index(START), body.index(END) + len(END)
        body = body[:a] + section.rstrip("\n") + body[b:]
    else:
        body = body.rstrip("\n") + "\n\n" + section
    return write_atomic(p, join_card(meta, body))
