"""Where a training set comes from: its name, licence, citation and homepage, read from the data folder.

A model records its training folder by name only (``training.data``: ``kvasir-seg``, never a local path);
:func:`find_training_data` finds that folder again on the machine at hand.

A pair folder may carry a dataset card (``README.md`` with YAML metadata: ``pretty_name``, ``license``,
``citation``, ``homepage``) or, for a Hugging Face dataset saved to disk, ``dataset_info.json``. Nothing is
assumed: unknown fields are None, and a dataset card made from a model with an unknown licence says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FIELDS = ("name", "license", "citation", "url")
# folders (os.pathsep-separated) in which a model's training data is looked up by its name
DATA_PATH_ENV = "FASTSYNTH_DATA"


def data_name(data_dir: str | os.PathLike) -> str:
    """What a model records of its training folder: the folder's name, never where it lies on this machine."""
    return Path(str(data_dir)).resolve().name


def find_training_data(recorded: str, model_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """(the local folder of a model's training data or None, the places tried). ``recorded``: the model's
    ``training.data`` (a folder name; older models: the path as typed). Tried in order: the data folder of the
    training run the model belongs to (``RUN/config.json`` when the model is ``RUN/model``), ``recorded`` as given,
    next to the model (in its folder, in the one above), then ``NAME`` in each folder of ``$FASTSYNTH_DATA``."""
    model_dir = Path(model_dir)
    cands = []
    run_cfg = model_dir.parent / "config.json"
    if model_dir.name == "model" and run_cfg.is_file():
        try:
            run_data = json.loads(run_cfg.read_text()).get("data")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            run_data = None
        if isinstance(run_data, str) and run_data:
            cands.append(Path(run_data))
    if recorded:
        name = Path(recorded).name
        cands += [Path(recorded), model_dir / recorded, model_dir.parent / recorded]
        cands += [Path(d) / name for d in os.environ.get(DATA_PATH_ENV, "").split(os.pathsep) if d]
    return next((c for c in cands if c.is_dir()), None), cands


def data_provenance(data_dir: str | os.PathLike) -> dict:
    """{name, license, citation, url} of a training data folder (the folder's name when nothing else is known)."""
    p = Path(str(data_dir))
    out = {"name": p.name or None, "license": None, "citation": None, "url": None}
    card = p / "README.md"
    if card.is_file():
        meta = _yaml_head(card.read_text(errors="replace"))
        out["name"] = meta.get("pretty_name") or out["name"]
        lic = meta.get("license")
        out["license"] = lic[0] if isinstance(lic, list) and lic else (lic or None)
        out["citation"] = meta.get("citation") or None
        out["url"] = meta.get("homepage") or meta.get("url") or None
    decathlon = p / "dataset.json"  # a Medical Segmentation Decathlon folder: its licence and reference
    if decathlon.is_file():
        try:
            d = json.loads(decathlon.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            d = {}
        if isinstance(d, dict) and ("training" in d or "labels" in d):
            out["license"] = out["license"] or d.get("licence") or d.get("license") or None
            ref = str(d.get("reference") or "").strip()
            out["citation"] = out["citation"] or (
                (f"{ref}; " if ref else "") + "Antonelli et al., \"The Medical Segmentation Decathlon\", Nature "
                "Communications 13, 4128 (2022)")
            out["url"] = out["url"] or "http://medicaldecathlon.com"
    info = p / "dataset_info.json"
    if info.is_file():
        try:
            d = json.loads(info.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            d = {}
        if isinstance(d, dict):
            out["license"] = out["license"] or d.get("license") or None
            out["citation"] = out["citation"] or d.get("citation") or None
            out["url"] = out["url"] or d.get("homepage") or None
    return {k: (str(v).strip() if v is not None else None) for k, v in out.items()}


def model_data_provenance(meta: dict) -> dict:
    """The training-data provenance of a model's metadata (``training_data``); for models saved before it was
    recorded, only the name of its training folder (licence unknown)."""
    td = meta.get("training_data")
    if isinstance(td, dict):
        return {k: td.get(k) for k in FIELDS}
    data = str(meta.get("training", {}).get("data") or "")
    return {"name": Path(data).name or None, "license": None, "citation": None, "url": None}


def _yaml_head(text: str) -> dict:
    import yaml

    if not text.startswith("---"):
        return {}
    head = text[3:].split("\n---", 1)[0]
    try:
        meta = yaml.safe_load(head)
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}
