"""report.html: one self-contained page of a `fastsynth evaluate` result that a person opens, keeps and shares.

Everything is inline (the plots and sample grids as data: URIs, the style in the page): no network, no scripts. It
shows the dataset's identity (model, settings, counts), the sample grid of the synthetic pairs with their mask
contours, every metric beside its real reference, the downstream table of each protocol with per-seed values and the
comparisons' verdicts, per-class tables for label maps, and the plots. The grid of real held-out images is included
only in the local page (``include_real``); the page `fastsynth publish` uploads is rendered without it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

REPORT_NAME = "report.html"
PLOTS = (("samples_synthetic.png", "Synthetic pairs (mask contours)"),
         ("samples_real.png", "Real held-out pairs (local only: never published)"),
         ("metrics.png", "Image metrics"), ("mask_stats.png", "Mask statistics"),
         ("downstream_dice.png", "Downstream Dice per protocol"))

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1140px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:1.6em;margin:.2em 0 .1em}h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #dde2ea}
p.sub{color:#5a6475;margin:0 0 1em}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.3em 0 1em;font-size:.92em;background:#fff}
th,td{border:1px solid #dde2ea;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;height:auto;border:1px solid #dde2ea;background:#fff}
figcaption{color:#5a6475;font-size:.9em}
.better{color:#11773b;font-weight:600}.worse{color:#b42318;font-weight:600}.nd{color:#5a6475}
code{background:#eef1f6;padding:1px 4px;border-radius:3px;word-break:break-all}
"""


def _e(v) -> str:
    return html.escape(str(v))


def _num(v, nd: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return _e(v)


def _table(head: list[str] | None, rows: list[list[str]], num_cols: tuple = ()) -> str:
    th = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="wrap"><table>{th}<tbody>{body}</tbody></table></div>'


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _identity(results: dict, manifest: dict) -> str:
    m = {**(results.get("synthetic_manifest") or {}), **(manifest or {})}
    model = m.get("model") or {}
    t = model.get("training") or {}
    rows = [["mode", _e(m.get("mode"))],
            ["sampler", f"{_e(m.get('sampler'))} × {_e(m.get('steps'))}"
             + (f", mask fixed at σ {_e(m['condition_at'])}" if m.get("condition_at") else "")
             + (", redrawn from the mask" if m.get("redraw") else "")],
            ["pairs evaluated / in the dataset", f"{_e(results.get('n_synthetic'))} / {_e(m.get('n'))}"],
            ["resolution", f"{_e(results.get('resolution'))}×{_e(results.get('resolution'))}"],
            ["model", f"<code>{_e(model.get('path', '?'))}</code> (sha256 <code>{_e(str(m.get('model_sha256'))[:16])}"
                      f"…</code>), {_e(t.get('steps_done', '?'))} steps on {_e(t.get('n_train', '?'))} pairs"],
            ["runtime", f"{_e(m.get('backend', '?'))} {_e(m.get('runtime_precision', m.get('precision', '?')))}"]]
    if m.get("latent"):
        lat = m["latent"]
        rows.append(["latent space", f"{_e(lat['autoencoder'])} autoencoder, {_e(lat['grid'])}×{_e(lat['grid'])} "
                                     f"grid, mask as <code>{_e(lat['mask_repr'])}</code>"])
    ref = results.get("reference") or {}
    rows.append(["real reference", f"<code>{_e(ref.get('root', '?'))}</code>: {_e(ref.get('fid_reference', '?'))} "
                                   f"images ({_e(ref.get('n_reference', '?'))}); {_e(ref.get('n_heldout', 0))} held "
                                   f"out, {_e(ref.get('n_train', '?'))} train"])
    return _table(None, rows)


def _metrics(results: dict) -> str:
    rows = []
    fk = results.get("fid_kid")
    if fk:
        rows.append(["FID (clean-fid protocol)", _num(fk["fid"], 2), "0 (the real set itself)",
                     f"{_e(fk['n_synthetic'])} vs {_e(fk['n_real'])} images; biased below 2048 images"])
        rows.append(["KID", f"{_num(fk['kid'], 5)} ± {_num(fk['kid_std'], 5)}", "0", "unbiased at any n"])
    ms = results.get("msssim")
    if ms:
        rows.append(["MS-SSIM between random pairs", _num(ms["synthetic"]["mean"]),
                     _num((ms.get("real") or {}).get("mean")), "lower = more diverse"])
    mk = results.get("masks")
    if mk:
        s, r = mk["synthetic"], mk.get("real") or {}
        rows.append(["mask area fraction (mean)", _num(s["area_fraction_mean"]), _num(r.get("area_fraction_mean")),
                     ""])
        rows.append(["regions per mask (mean)", _num(s["components_mean"], 2), _num(r.get("components_mean"), 2), ""])
    hf = results.get("hf")
    if hf:
        rows.append(["high-frequency energy (grain)", _num(hf["synthetic"], 3), _num(hf["real"], 3),
                     f"ratio {_num(hf['ratio'], 3)}"])
    ag = results.get("agreement")
    if ag:
        rows.append(["label agreement (Dice of real-trained segmenters vs the generated masks)",
                     f"{_num(ag['dice'], 3)} ± {_num(ag['dice_seed_std'], 3)}",
                     f"{_num(ag.get('real_heldout_dice'), 3)} (their Dice on real held-out images)",
                     "per seed: " + ", ".join(_num(v, 3) for v in ag.get("dice_per_seed", []))])
    mem = results.get("memorization")
    if mem:
        rows.append(["near-copies of training images", f"{_e(mem['n_flagged'])} / {_e(mem['n_synthetic'])}", "",
                     f"{_e(mem['method'])} similarity ≥ {_e(mem['threshold'])}"])
    out = _table(["metric", "synthetic", "real reference", "notes"], rows, (1, 2)) if rows else ""
    pc = (mk or {}).get("per_class") or {}
    if pc:
        out += "<h3>Per class</h3>" + _table(
            ["class", "area fraction: synthetic", "real", "regions: synthetic", "real"],
            [[_e(name), _num(v["synthetic"]["area_fraction_mean"]), _num(v["real"]["area_fraction_mean"]),
              _num(v["synthetic"]["components_mean"], 2), _num(v["real"]["components_mean"], 2)]
             for name, v in pc.items()], (1, 2, 3, 4))
    return out


def _downstream(ds: dict) -> str:
    st = ds.get("settings") or {}
    out = (f'<p class="sub">{_e(st.get("arch"))}/{_e(st.get("encoder"))} segmenters at {_e(st.get("resolution"))}px, '
           f"{_e(st.get('steps'))} steps × {_e(st.get('batch_size'))} images per protocol and seed, seeds "
           f"{_e(st.get('seeds'))}; Dice/IoU: per-image mean on each real test set.</p>")
    rows, per_class = [], []
    for proto, run in (ds.get("runs") or {}).items():
        for test, s in run["test"].items():
            rows.append([_e(proto), _e(test), f"{_num(s['dice'])} ± {_num(s.get('dice_seed_std'))}",
                         f"{_num(s['iou'])} ± {_num(s.get('iou_seed_std'))}",
                         ", ".join(_num(v) for v in s.get("dice_per_seed", []))])
            for name, c in (s.get("per_class") or {}).items():
                per_class.append([_e(proto), _e(test), _e(name), _num(c.get("dice")), _num(c.get("iou"))])
    out += _table(["protocol", "test set", "Dice (mean ± std over seeds)", "IoU", "Dice per seed"], rows, (2, 3))
    if per_class:
        out += "<h3>Per class</h3>" + _table(["protocol", "test set", "class", "Dice", "IoU"], per_class, (3, 4))
    comps = ds.get("comparisons") or []
    if comps:
        cls = {"better": "better", "worse": "worse"}
        out += "<h3>Comparisons (a difference inside the seeds' spread is not a result)</h3>" + _table(
            ["candidate", "baseline", "test set", "Dice difference", "spread", "verdict"],
            [[_e(c["candidate"]), _e(c["baseline"]), _e(c["test"]), _num(c["dice_delta"]), _num(c["spread"]),
              f'<span class="{cls.get(c["verdict"], "nd")}">{_e(c["verdict"])}</span>'] for c in comps], (3, 4))
    return out


def render_report(results: dict, out_dir: str | Path, manifest: dict | None = None,
                  include_real: bool = True) -> str:
    """The page's HTML. ``out_dir``: where evaluate wrote its plots (inlined). ``include_real``: the grid of real
    held-out images (never in a published page)."""
    out_dir = Path(out_dir)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width, initial-scale=1'>"
             f"<title>fastsynth evaluation</title><style>{CSS}</style></head><body><main>",
             "<h1>fastsynth evaluation</h1>",
             f'<p class="sub">{_e(results.get("date", ""))} · fastsynth {_e(results.get("fastsynth_version", ""))} · '
             f'{_e(results.get("seconds", "?"))} s</p>',
             "<h2>Dataset</h2>", _identity(results, manifest or {})]
    figs = [(f, c) for f, c in PLOTS if (out_dir / f).is_file() and (include_real or f != "samples_real.png")]
    samples = [fc for fc in figs if fc[0].startswith("samples_")]
    if samples:
        parts.append("<h2>Samples</h2>" + "".join(_img(out_dir / f, c) for f, c in samples))
    parts += ["<h2>Metrics</h2>", _metrics(results)]
    if results.get("downstream"):
        parts += ["<h2>Downstream segmentation</h2>", _downstream(results["downstream"])]
    plots = [fc for fc in figs if not fc[0].startswith("samples_")]
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(_img(out_dir / f, c) for f, c in plots))
    notes = results.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    if results.get("command"):
        parts.append(f'<p class="sub">Produced by <code>{_e(results["command"])}</code></p>')
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def write_report(results: dict, out_dir: str | Path, manifest: dict | None = None, include_real: bool = True,
                 path: str | Path | None = None) -> Path:
    from ..utils import write_atomic

    p = Path(path) if path else Path(out_dir) / REPORT_NAME
    return write_atomic(p, render_report(results, out_dir, manifest, include_real))
