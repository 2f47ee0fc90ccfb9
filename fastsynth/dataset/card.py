"""The dataset card (README.md with YAML metadata) of a synthetic dataset."""

from __future__ import annotations

from ..errors import FastsynthError
from ..utils import hub_license, is_share_alike, public_text

EVAL_KEY = "fastsynth_evaluation"
START = "<!-- fastsynth-evaluation:start -->"
END = "<!-- fastsynth-evaluation:end -->"


def split_card(text: str, where: str = "README.md") -> tuple[dict, str]:
    """(metadata dict, body) of a card; a card without metadata gives ({}, text)."""
    import yaml

    if not text.startswith("---"):
        return {}, text
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise FastsynthError(f"{where}: YAML metadata starts with '---' but never ends with a '---' line")
    head, body = parts[0][3:], parts[1]
    body = body[body.index("\n") + 1:] if "\n" in body else ""
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise FastsynthError(f"{where}: invalid YAML metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise FastsynthError(f"{where}: YAML metadata must be a mapping, got {type(meta).__name__}")
    return meta, body


def join_card(meta: dict, body: str) -> str:
    import yaml

    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


def carry_evaluation(old_card: str, new_card: str) -> str:
    """``new_card`` with the evaluation results of ``old_card`` (its YAML key and text section), so that
    re-rendering a card (generate run again to completion, filter) never wipes what evaluate wrote."""
    try:
        old_meta, old_body = split_card(old_card)
    except FastsynthError:
        return new_card
    if EVAL_KEY not in old_meta and START not in old_body:
        return new_card
    meta, body = split_card(new_card)
    if EVAL_KEY in old_meta:
        meta[EVAL_KEY] = old_meta[EVAL_KEY]
    if START in old_body and END in old_body:
        section = old_body[old_body.index(START):old_body.index(END) + len(END)]
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    return join_card(meta, body)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def project_url() -> str | None:
    """fastsynth's homepage from the installed package's metadata (``[project.urls]``), or None: the card links
    to the project only when a real address is known."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        md = metadata("fastsynth")
    except PackageNotFoundError:
        return None
    for entry in md.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "source", "repository") and url.strip().startswith("https://"):
            return url.strip()
    home = md.get("Home-page")
    return home if home and home.startswith("https://") else None


def _provenance(td: dict, who: str = "The generating model") -> str:
    """The card's provenance paragraph, from ``who``'s training-data metadata only."""
    if not td.get("name"):
        return (f"{who}'s metadata does not name its training data, nor its licence: find out both "
                "before sharing this dataset.")
    lic = td.get("license")
    text = f"{who} was trained on {td['name']}"
    text += f" (licence: {lic})." if lic else (" (licence unknown: the model's metadata does not record it; check it "
                                               "before sharing this dataset).")
    if td.get("url"):
        text += f" Source: {td['url']}."
    if td.get("citation"):
        text += f" Cite: {td['citation']}."
    if is_share_alike(lic):
        text += (f" **Share-alike**: this dataset is derived from data licensed {lic}; whoever redistributes it, or "
                 "data made from it, names the source and keeps the same licence.")
    return text


def _latent_row(m: dict) -> str:
    """A latent model's space: the autoencoder by name and hash (TAEF2: MIT, Ollin Boer Bohan) and the mask's form."""
    lat = m.get("latent")
    if not lat:
        return ""
    dec = lat.get("decoder") or {}
    return (f"| latent space | {lat['autoencoder'].upper()} tiny autoencoder (MIT; github.com/madebyollin/taesd; sha256 "
            f"`{lat['autoencoder_sha256'][:16]}…`), {lat['grid']}x{lat['grid']} grid, mask as `{lat['mask_repr']}`; "
            f"decoder {dec.get('backend', '?')} {dec.get('precision', '?')} |\n")


def _cascade_row(m: dict) -> str:
    """A cascade's base model: its name, hash, resolution, settings and the strength of the re-rendering."""
    c = m.get("cascade")
    if not c:
        return ""
    base = m.get("base_model") or {}
    bs = c.get("base_settings") or {}
    return (f"| cascade | pairs drawn by `{base.get('path', '?')}` (sha256 `{c['base_sha256'][:16]}…`, "
            f"{c['base_resolution']}x{c['base_resolution']}, `{bs.get('sampler', '?')}` x{bs.get('steps', '?')}), "
            f"upsampled and re-rendered at strength {c['strength']:g}; masks are the base's, upsampled |\n")


def _keep_row(m: dict) -> str:
    """The label-agreement filter of ``generate --keep-agreeing``: its segmenter, threshold and acceptance."""
    k = m.get("keep_agreeing")
    if not k:
        return ""
    run = m.get("keep_agreeing_run") or {}
    on = " from each pair's latent, before decoding" if k.get("scored_on") == "latent" else ""
    acc = (f"; {run['kept']} kept of {run['candidates']} candidates ({run['acceptance']:.0%})"
           if run.get("acceptance") else "")
    return (f"| label-agreement filter | kept the pairs whose mask agrees with a segmenter trained on real data "
            f"(`{run.get('segmenter', '?')}`, sha256 `{k['segmenter_sha256'][:16]}…`, scored at "
            f"{k['scored_at']}x{k['scored_at']}{on}) at Dice >= {k['min_agreement']:g}{acc}; column `agreement` |\n")


def _base_provenance(m: dict) -> str:
    """The cascade's base model's training data, when it is not the generating model's own."""
    base_td = (m.get("base_model") or {}).get("training_data") or {}
    td = (m.get("model") or {}).get("training_data") or {}
    if not m.get("cascade") or (base_td.get("name") and base_td.get("name") == td.get("name")
                                and base_td.get("license") == td.get("license")):
        return ""
    return " " + _provenance(base_td, "The cascade's base model")


def _dataset_license(m: dict, td: dict):
    """The dataset's licence: the generating model's data's, or a cascade base's where that one is share-alike."""
    base_lic = ((m.get("base_model") or {}).get("training_data") or {}).get("license")
    return base_lic if m.get("cascade") and is_share_alike(base_lic) else td.get("license")


def render_card(m: dict) -> str:
    """Render the card from the manifest ``m`` (see pipeline.generate). Licence and provenance come from the
    generating model's metadata (``m["model"]["training_data"]``), never from assumptions."""
    n = m["n"]
    model = m.get("model", {})
    t = model.get("training", {})
    td = model.get("training_data") or {}
    url = project_url()
    fastsynth_ref = f"[fastsynth]({url})" if url else "fastsynth"
    configs = ("configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
               if m["format"] == "parquet" else "")
    yaml = f"""---
license: {hub_license(_dataset_license(m, td))}
task_categories:
- image-segmentation
tags:
- synthetic
- medical-imaging
- diffusion
- fastsynth
size_categories:
- {_size_category(n)}
{configs}fastsynth:
  version: {m['fastsynth_version']}
  mode: {m['mode']}
  sampler: {m['sampler']}
  steps: {m['steps']}
  seed: {m['seed']}
  resolution: {m['resolution']}
  model_sha256: {m['model_sha256']}
---
"""
    body = f"""
# Synthetic image + mask dataset (fastsynth)

{n} synthetic image/mask pairs at {m['resolution']}x{m['resolution']}, generated by
{fastsynth_ref} {m['fastsynth_version']} with a joint RGB+mask diffusion model.

{_how_to_load(m["format"])}

| setting | value |
|---|---|
| mode | `{m['mode']}` |
| sampler | `{m['sampler']}`, {m['steps']} steps{_redraw_text(m)} |
| seed | {m['seed']} (row i uses the seed in its `seed` column: it can be regenerated alone) |
| resolution | {m['resolution']} |
| mask decoding | threshold at {m['mask_threshold']} (model space), opening with a {m['opening_px']}px ellipse |
| model | `{model.get('path', '?')}` (sha256 `{m['model_sha256'][:16]}…`) |
| model training data | {td.get('name') or 'unknown'} ({t.get('n_train', '?')} pairs), {t.get('steps_done', '?')} steps |
{_latent_row(m)}{_cascade_row(m)}{_keep_row(m)}| command | `{public_text(m.get('command') or '')}` |

Masks are 8-bit greyscale with values exactly 0 and 255. Each row's `source` names the real mask or image
it was conditioned on (empty for unconditional pairs).

## Provenance and licence
{_provenance(td)}{_base_provenance(m)} The method follows Saragih, Hibi & Tyrrell, IJCARS 2024. Synthetic images are not clinical
data; evaluate them (FID, downstream Dice, memorization audit) before use.
"""
    if m.get("data") and (m["data"].get("class_names") or m["data"].get("channels", 3) != 3):
        body = _modality_body(body, m)
    return yaml + body


def _modality_body(body: str, m: dict) -> str:
    """The card of a non-polyp dataset (grey / 16-bit images, label maps): what the columns hold, the classes,
    and no Kvasir provenance."""
    from ..data.modality import modality_from_dict

    mod = modality_from_dict(m["data"])
    body = body.replace("# Synthetic polyp image + mask dataset (fastsynth)", "# Synthetic image + label dataset (fastsynth)")
    body = body.replace("with a joint RGB+mask diffusion model.", f"with a joint image+label diffusion model: {mod.describe()}.")
    img = {"RGB": "8-bit RGB", "L": "8-bit greyscale (mode L)", "I;16": "16-bit greyscale (mode I;16)"}[mod.image_mode]
    if mod.window is not None:
        img += (f"; values in the original scanner range, generated in the intensity window {mod.window[0]:g}.."
                f"{mod.window[1]:g} (the 0.5 / 99.5 percentiles of the training images)")
    if mod.binary:
        lab = "Masks are 8-bit greyscale with values exactly 0 and 255."
    else:
        rows = "\n".join(f"| {k} | {n} |" for k, n in enumerate(mod.names))
        lab = (f"Masks are 8-bit label maps (mode L) with values 0..{mod.num_classes - 1}:\n\n| value | class |\n"
               f"|---|---|\n{rows}\n")
    body = body.replace("Masks are 8-bit greyscale with values exactly 0 and 255.", f"Images are {img}.\n\n{lab}\n")
    head, _, _ = body.partition("## Provenance and licence")
    return head + f"""## Provenance and licence
{_provenance(m.get("model", {}).get("training_data") or {})} Synthetic images are not clinical data; evaluate them
(FID, downstream Dice per class, memorization audit) before use.
"""


def _how_to_load(fmt: str) -> str:
    if fmt == "parquet":
        return ("```python\nfrom datasets import load_dataset\n"
                "ds = load_dataset(\"path/to/this/folder\", split=\"train\")  "
                "# columns: image, mask, index, seed, mode, source\n```")
    if fmt == "nnunet":
        return ("An nnU-Net v2 raw dataset: `imagesTr/fastsynth_{index:08d}_0000.png`, `labelsTr/fastsynth_{index:08d}.png` "
                "(class indices 0..K-1) and `dataset.json`; copy or link this folder into `nnUNet_raw` as "
                "`DatasetXXX_Name` and run `nnUNetv2_plan_and_preprocess -d XXX --verify_dataset_integrity`. Per-row "
                "metadata (index, seed, mode, source) in `shards/*.jsonl`.")
    if fmt == "nifti":
        return ("2D NIfTI files: `images/{index:08d}.nii.gz` and `labels/{index:08d}.nii.gz` (class indices 0..K-1; "
                "RGB images carry their channels in the 5th dimension), with the pixel spacing of the model's training "
                "volumes (`pixel_spacing_mm` in `fastsynth.json`; unit spacing for 2D sources). Per-row metadata (index, "
                "seed, mode, source, the two files) in `shards/*.jsonl`:\n\n```python\n"
                "from datasets import Nifti, load_dataset\n"
                "root = \"path/to/this/folder/\"\n"
                "ds = load_dataset(\"json\", data_files=root + \"shards/*.jsonl\", split=\"train\")\n"
                "ds = ds.map(lambda r: {\"image\": root + r[\"image\"], \"mask\": root + r[\"mask\"]})\n"
                "ds = ds.cast_column(\"image\", Nifti()).cast_column(\"mask\", Nifti())  # nibabel images\n```")
    return ("PNG files: `images/{index:08d}.png` and `masks/{index:08d}.png`; per-row metadata (index, seed, "
            "mode, source) in `shards/*.jsonl`.")


def _redraw_text(m: dict) -> str:
    """How the images were made beyond the sampler: the redraw pass and guidance (absent in older manifests)."""
    out = ""
    if m.get("autoguide"):
        ag, name = m["autoguide"], (m.get("autoguide_model") or {}).get("path", "a weaker model")
        out += f"; the first pass autoguided (Karras et al. 2024) by the weaker model {name}, scale {ag['scale']:g}"
    if m.get("redraw"):
        out += "; each image redrawn from its generated mask in a second, mask-conditioned pass"
    if m.get("condition_at"):
        out += (f"; one pass whose mask is fixed at noise level sigma {m['condition_at']:g} (from the network's "
                "prediction) and whose image is finished conditioned on it")
    if m.get("max_components"):
        out += f" (each mask first reduced to its {m['max_components']} largest connected region(s))"
    if m.get("guidance", 1.0) not in (None, 1.0):
        out += f"; classifier-free guidance {m['guidance']:g}"
        if m.get("guidance_interval"):
            lo, hi = m["guidance_interval"]
            out += f" at noise levels sigma in ({lo:g}, {hi:g}]"
    if m.get("runtime_precision") == "int8":
        out += "; network in int8 (statically quantised, accepted by fastsynth's accuracy gate against fp32)"
    elif m.get("runtime_precision") == "bf16" or m.get("precision") == "bf16":
        out += "; network in bf16"
    return out
