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
    for r in d["records"]:
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['n']} | {r['fid']:.1f} | {r['kid']:.4f} | "
                     f"{r['mask_area_wasserstein']:.3f} | {r['mask_components_tv']:.3f} | {r['empty_mask_fraction']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (("bench_cpu.json", bench_table), ("quality_vs_nfe_cpu.json", quality_table)):
        if (R / name).exists():
            print(f"### {name}\n\n{fn(R / name)}\n")
