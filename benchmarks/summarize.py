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
    from fastsynth.bench import compare_with_untuned

    vs = compare_with_untuned(d["records"])  # computed from the records: results written before the field too
    if vs:
        lines += ["", "Against the untuned baseline of the same run (per evaluation): " + "; ".join(
            f"{c['backend']} {c['speedup']:.2f}x ({c['ms_per_eval']:.1f} vs {c['untuned_ms_per_eval']:.1f} ms, "
            f"{c['verdict'].upper() if c['verdict'] == 'slower' else c['verdict']})" for c in vs)]
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


def judge_table(path: Path) -> str:
    """A dataset judged by `fastsynth evaluate --downstream` (several segmenter seeds): every protocol's Dice as
    mean ± std over the seeds, the comparisons with their verdicts, label agreement and the image metrics."""
    d = json.loads(path.read_text())
    ds = d.get("downstream") or {}
    st = ds.get("settings", {})
    lines = [f"{d['n_synthetic']} synthetic pairs ({d['synthetic_manifest'].get('mode')}, "
             f"{d['synthetic_manifest'].get('sampler')} x{d['synthetic_manifest'].get('steps')}"
             + (f", redrawn with guidance {d['synthetic_manifest'].get('guidance')}"
                if d['synthetic_manifest'].get('redraw') else "")
             + (" at sigma in ({:g}, {:g}]".format(*d['synthetic_manifest']['guidance_interval'])
                if d['synthetic_manifest'].get('redraw') and d['synthetic_manifest'].get('guidance_interval')
                else "") + "); "
             + (f"{st['arch']}/{st['encoder']}, {st['steps']} steps x {st['batch_size']}, seeds {st['seeds']}; "
                if st else "") + f"{d['seconds'] / 60:.1f} min in all (segmenters from the cache count as 0)", ""]
    if ds:
        lines += ["| protocol | Dice (mean ± std over seeds) | per seed |", "|---|---|---|"]
        for name, run in ds["runs"].items():
            sc = run["test"]["heldout"]
            per_class = "".join(f"; {c} {v['dice']:.3f}" for c, v in sc.get("per_class", {}).items())
            lines.append(f"| {name} | {sc['dice']:.3f} ± {sc['dice_seed_std']:.3f}{per_class} | "
                         f"{', '.join(f'{v:.3f}' for v in sc['dice_per_seed'])} |")
        lines += ["", "| comparison | Dice difference | spread | verdict |", "|---|---|---|---|"]
        for c in ds.get("comparisons", []):
            lines.append(f"| {c['candidate']} vs {c['baseline']} | {c['dice_delta']:+.3f} | {c['spread']:.3f} | "
                         f"{c['verdict']} |")
    ag, hf, fk, mem = d.get("agreement"), d.get("hf"), d.get("fid_kid"), d.get("memorization")
    extra = []
    if ag:
        extra.append(f"label agreement {ag['dice']:.3f} ± {ag['dice_seed_std']:.3f} "
                     f"({ag.get('ratio', 0):.2f}x the real-trained segmenters' held-out Dice {ag['real_heldout_dice']:.3f})"
                     + "".join(f"; {c} {v:.3f}" for c, v in ag.get("dice_per_class", {}).items()))
    if hf:
        extra.append(f"grain {hf['synthetic']:.2f} vs real {hf['real']:.2f} ({hf['ratio']:.2f}x)")
    if fk:
        extra.append(f"FID {fk['fid']:.1f}, KID {fk['kid']:.4f} ± {fk['kid_std']:.4f} (n={fk.get('n_synthetic')})")
    if mem:
        extra.append(f"memorization: {mem['n_flagged']} / {mem['n_synthetic']} flagged")
    if extra:
        lines += ["", "; ".join(extra)]
    return "\n".join(lines)


def study_table(paths: list[Path]) -> str:
    lines = ["| arm | grain (real 7.6) | HF power (real 0.030) | mask area (real 0.171) | area W1 | empty masks | "
             "label agreement (3 seeds) | agreement / real held-out | sampling s (128 pairs) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in paths:
        for r in json.loads(p.read_text())["rows"]:
            ag = r.get("agreement") or {}
            lines.append(f"| {r['label']} | {r['hf']:.2f} | {r['hf_power']:.4f} | {r['mask_area']:.3f} | "
                         f"{r['mask_area_w1']:.3f} | {r['empty_masks']:.3f} | "
                         f"{ag.get('dice', float('nan')):.3f} ± {ag.get('dice_seed_std', float('nan')):.3f} | "
                         f"{ag.get('ratio', float('nan')):.2f} | {r['sampling_seconds']:.0f} |")
    return "\n".join(lines)


def noise_table(path: Path) -> str:
    d = json.loads(path.read_text())
    lines = [f"Real training images: grain {d['real_train']['adjacent_diff']:.2f}, HF power "
             f"{d['real_train']['hf_power_fraction']:.4f}, 2x2 patch-boundary ratio "
             f"{d['real_train']['patch_boundary_ratio']:.3f}; {d['n']} seeds per row", "",
             "| model | sampler | grain | HF power | patch-boundary ratio |", "|---|---|---|---|---|"]
    for name, m in d["models"].items():
        for s, g in m["samplers"].items():
            lines.append(f"| {name} ({m['steps_trained']} steps) | {s} | {g['adjacent_diff']:.2f} | "
                         f"{g['hf_power_fraction']:.4f} | {g['patch_boundary_ratio']:.3f} |")
        if "fp16_storage" in m:
            g = m["fp16_storage"]
            lines.append(f"| {name}, weights rounded to fp16 | unipc:6 | {g['adjacent_diff']:.2f} | "
                         f"{g['hf_power_fraction']:.4f} | {g['patch_boundary_ratio']:.3f} (max pixel change "
                         f"{g['max_abs_pixel_diff']}) |")
        if "raw_weights_unipc6" in m:
            g = m["raw_weights_unipc6"]
            lines.append(f"| {name}, raw (non-EMA) weights | unipc:6 | {g['adjacent_diff']:.2f} | "
                         f"{g['hf_power_fraction']:.4f} | {g['patch_boundary_ratio']:.3f} |")
        tr = m.get("ddim50_x0_trajectory")
        if tr:
            lines.append(f"| {name}: grain of the x0 prediction along DDIM-50 | t = "
                         + ", ".join(str(r['t']) for r in tr) + " | "
                         + ", ".join(f"{r['adjacent_diff']:.1f}" for r in tr) + " | | |")
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
    for p in sorted(R.glob("judge_*.json")):
        print(f"### {p.name}\n\n{judge_table(p)}\n")
    studies = sorted(R.glob("recipe_study_*.json"))
    if studies:
        print(f"### recipe study ({', '.join(p.name for p in studies)})\n\n{study_table(studies)}\n")
    if (R / "noise_diagnosis_cpu.json").exists():
        print(f"### noise_diagnosis_cpu.json\n\n{noise_table(R / 'noise_diagnosis_cpu.json')}\n")
