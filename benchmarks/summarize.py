"""Markdown tables from the committed benchmark results (what README.md quotes).

    python benchmarks/summarize.py
"""

from __future__ import annotations

import json
from pathlib import Path

R = Path(__file__).parent / "results"


def bench_table(path: Path) -> str:
    d = json.loads(path.read_text())
    env = d["environment"]
    lines = [f"Device: {env['device']} ({env['torch_threads']} threads), torch {env['torch']}, "
             f"onnxruntime {env['onnxruntime']}, commit {env['git_commit']}", "",
             "| scenario | backend | batch | NFE | ms / network eval | evals/s | pairs/s | % of peak | build s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in d["records"]:
        if r.get("skipped"):
            lines.append(f"| {r['scenario']} | {r['backend']} | {r['batch_size']} | | skipped: {r['skipped'][:60]} | | | | |")
            continue
        f = lambda k, fmt: (fmt.format(r[k]) if r.get(k) is not None else "")
        pct = f"{100 * r['fraction_of_peak']:.0f}" if r.get("fraction_of_peak") else ""
        pairs = f("pairs_per_s", "{:.3g}") + (" (derived)" if r.get("derived") else "")
        lines.append(f"| {r['scenario']} | {r['backend']} | {r['batch_size']} | {r.get('nfe', '')} | "
                     f"{f('ms_per_eval', '{:.1f}')} | {f('evals_per_s', '{:.0f}')} | {pairs} | {pct} | "
                     f"{f('build_s', '{:.1f}')} |")
    return "\n".join(lines)


def quality_table(path: Path) -> str:
    d = json.loads(path.read_text())
    lines = [f"Model: {d['model']} ({d['model_steps_trained']} training steps); reference: {d['reference']}", "",
             "| sampler | NFE | n | FID | KID | mask area W1 | mask components TV | empty masks |",
             "|---|---|---|---|---|---|---|---|"]
    ref = any("psnr_vs_reference" in r for r in d["records"])
    if ref:
        lines[2] = lines[2] + f" PSNR vs {d['records'][0]['reference']} | mask Dice vs it |"
        lines[3] += "---|---|"
    for r in d["records"]:
        row = (f"| {r['sampler']} | {r['nfe']} | {r['n']} | {r['fid']:.1f} | {r['kid']:.4f} | "
               f"{r['mask_area_wasserstein']:.3f} | {r['mask_components_tv']:.3f} | {r['empty_mask_fraction']:.2f} |")
        if ref:
            row += f" {r['psnr_vs_reference']:.1f} | {r['mask_dice_vs_reference']:.3f} |"
        lines.append(row)
    return "\n".join(lines)


def downstream_table(path: Path) -> str:
    d = json.loads(path.read_text())
    ds = d["downstream"]
    st = ds["settings"]
    lines = [f"{d['n_synthetic']} synthetic pairs ({d['synthetic_dir']}); {st['arch']}/{st['encoder']}, {st['steps']} "
             f"steps x {st['batch_size']}; {d['seconds'] / 60:.1f} min in all", "",
             "| protocol | test set | Dice | IoU |", "|---|---|---|---|"]
    for name, run in ds["runs"].items():
        for t, sc in run["test"].items():
            lines.append(f"| {name} | {t} | {sc['dice']:.3f} | {sc['iou']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (("bench_cpu.json", bench_table), ("quality_vs_nfe_cpu.json", quality_table),
                     ("distill_quality_cpu.json", quality_table), ("downstream_bundled_cpu.json", downstream_table),
                     ("downstream_bundled_fast_cpu.json", downstream_table)):
        if (R / name).exists():
            print(f"### {name}\n\n{fn(R / name)}\n")
