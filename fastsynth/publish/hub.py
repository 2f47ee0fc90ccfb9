"""Validate a synthetic dataset folder and upload it to the Hugging Face Hub.

What is uploaded: README.md (the card), fastsynth.json (the manifest), data/train-*.parquet (the shards) and,
when ``fastsynth evaluate`` wrote them, eval/*.png and eval/metrics.json. Nothing else from the folder.

The token comes from ``huggingface_hub.get_token()`` (``HF_TOKEN`` or the stored ``hf auth login`` token) or
the ``token`` argument. It is only handed to huggingface_hub calls: never printed, logged, or written; error
messages are scrubbed of it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import FastsynthError

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
UPLOAD_PATTERNS = ("README.md", "fastsynth.json", "data/train-*.parquet", "eval/*.png", "eval/metrics.json")


def plan_upload(root: str | os.PathLike) -> list[dict]:
    """The files that would be uploaded: [{"path": relative posix path, "bytes": size}], sorted."""
    root = Path(root)
    out = []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        if rel.endswith(".tmp") or not any(fnmatch.fnmatchcase(rel, p) for p in UPLOAD_PATTERNS):
            continue
        if rel.count("/") > 1:
            continue
        out.append({"path": rel, "bytes": f.stat().st_size})
    return out


def validate_dataset(root: str | os.PathLike, load_check: bool = True) -> dict:
    """Check a folder before upload: complete manifest, every shard present with its row count, card
    metadata valid and pointing at the shards, and that ``datasets`` loads it with Image features."""
    import pyarrow.parquet as pq

    from ..dataset import read_manifest, shard_name
    from .card import split_card

    root = Path(root)
    m = read_manifest(root)  # the one reader of the manifest (clear errors for missing/corrupt ones)
    if m.get("format", "parquet") != "parquet":
        raise FastsynthError(f"{root}: --format {m.get('format')} datasets cannot be published; generate with "
                             "--format parquet (the Hub viewer needs parquet shards with Image features)")
    if not m.get("complete"):
        raise FastsynthError(f"{root}: the dataset is incomplete (generation was interrupted); run the same "
                             "`fastsynth generate` command again to finish it before publishing")
    n, size = int(m["n"]), int(m["shard_size"])
    n_shards = (n + size - 1) // size
    problems = []
    expected = {shard_name(k).split("/", 1)[1]: min(size, n - k * size) for k in range(n_shards)}
    present = {p.name for p in (root / "data").glob("train-*.parquet")} if (root / "data").is_dir() else set()
    for name, rows in expected.items():
        if name not in present:
            problems.append(f"data/{name} is missing")
            continue
        try:
            got = pq.ParquetFile(root / "data" / name).metadata.num_rows
        except Exception as exc:
            problems.append(f"data/{name} is unreadable ({exc})")
            continue
        if got != rows:
            problems.append(f"data/{name} has {got} rows, the manifest says {rows}")
    for extra in sorted(present - set(expected)):
        problems.append(f"data/{extra} is not part of the {n}-row dataset in the manifest; remove it")
    if problems:
        raise FastsynthError(f"{root}: the dataset does not match its manifest: " + "; ".join(problems))

    card = root / "README.md"
    if not card.is_file():
        raise FastsynthError(f"{root}: no README.md dataset card")
    meta, _ = split_card(card.read_text(), str(card))
    if not meta:
        raise FastsynthError(f"{card}: the card has no YAML metadata")
    try:
        from huggingface_hub import DatasetCardData

        DatasetCardData(**meta)
    except Exception as exc:
        raise FastsynthError(f"{card}: invalid card metadata ({exc})") from None
    files = []
    for c in meta.get("configs") or []:
        for df in c.get("data_files") or []:
            pats = df.get("path") if isinstance(df, dict) else df
            files += [pats] if isinstance(pats, str) else list(pats or [])
    if not files:
        raise FastsynthError(f"{card}: the metadata has no configs/data_files entry (the Hub would not find the "
                             "shards)")
    matched = {p for pat in files for p in (f"data/{x}" for x in expected) if fnmatch.fnmatchcase(p, pat)}
    if matched != {f"data/{x}" for x in expected}:
        raise FastsynthError(f"{card}: configs data_files {files} do not cover the shards data/train-*.parquet")
    for key in ("license", "task_categories"):
        if key not in meta:
            raise FastsynthError(f"{card}: the metadata lacks '{key}'")
    features = None
    if load_check:
        features = _load_check(root, n)
    return {"rows": n, "shards": n_shards, "card_keys": sorted(meta), "features": features}


def _load_check(root: Path, n: int) -> dict:
    """Load as the Hub will (the folder, its card's configs) and decode the first row."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="fastsynth-validate-") as cache:
        try:
            ds = datasets.load_dataset(str(root), split="train", streaming=True, cache_dir=cache)
            row = next(iter(ds))
            feats = ds.features
        except Exception as exc:
            raise FastsynthError(f"{root}: `datasets.load_dataset` cannot read it ({type(exc).__name__}: {exc})") \
                from None
    kinds = {k: type(v).__name__ for k, v in (feats or {}).items()}
    for col in ("image", "mask"):
        if kinds.get(col) != "Image":
            raise FastsynthError(f"{root}: column {col!r} is {kinds.get(col)}, not an Image feature: the Hub "
                                 "viewer would not show it")
    if row["image"].size != row["mask"].size:
        raise FastsynthError(f"{root}: first row's image and mask differ in size")
    return kinds


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def resolve_token(token: str | None = None) -> str:
    if token:
        return token
    from huggingface_hub import get_token

    t = get_token()
    if not t:
        raise FastsynthError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN to a token with "
                             "write access (https://huggingface.co/settings/tokens)")
    return t


def _http_status(exc) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def publish(root: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
            dry_run: bool = False, token: str | None = None, api=None, load_check: bool = True,
            commit_message: str | None = None) -> dict:
    """Validate ``root`` and upload it as the dataset repo ``repo_id``. Returns what was (or would be) sent."""
    if not REPO_ID_RE.match(repo_id or ""):
        raise FastsynthError(f"--repo-id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")
    root = Path(root)
    report = validate_dataset(root, load_check=load_check)
    files = plan_upload(root)
    plan = {"repo_id": repo_id, "repo_type": "dataset", "private": private, "revision": revision or "main",
            "files": files, "bytes": sum(f["bytes"] for f in files), "validation": report, "dry_run": dry_run}
    if dry_run:
        return plan
    tok = resolve_token(token)
    from huggingface_hub import HfApi

    api = api or HfApi()
    try:
        try:
            who = api.whoami(token=tok)
        except Exception as exc:
            status = _http_status(exc)
            if type(exc).__name__ == "OfflineModeIsEnabled":
                raise FastsynthError("HF_HUB_OFFLINE is set: unset it to publish (or use --dry-run)") from None
            if status == 401:
                raise FastsynthError("the Hugging Face token was rejected (HTTP 401: invalid or expired); create "
                                     "a new one at https://huggingface.co/settings/tokens and log in again "
                                     "(`hf auth login`) or set HF_TOKEN") from None
            raise FastsynthError(f"could not reach the Hugging Face Hub to check the token "
                                 f"({type(exc).__name__}{f', HTTP {status}' if status else ''})") from None
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=tok)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True, token=tok)
        msg = commit_message or f"Upload fastsynth dataset ({report['rows']} pairs)"
        info = api.upload_folder(repo_id=repo_id, folder_path=str(root), repo_type="dataset",
                                 revision=revision, allow_patterns=[f["path"] for f in files],
                                 commit_message=msg, token=tok)
    except FastsynthError:
        raise
    except Exception as exc:
        status = _http_status(exc)
        if status in (401, 403):
            raise FastsynthError(f"the Hub refused the upload to {repo_id} (HTTP {status}): the token needs write "
                                 f"access to '{repo_id.split('/')[0]}'") from None
        raise FastsynthError(_scrub(f"upload to {repo_id} failed ({type(exc).__name__}"
                                    f"{f', HTTP {status}' if status else ''}: {exc})", tok)) from None
    plan["user"] = (who or {}).get("name") if isinstance(who, dict) else None
    plan["commit_url"] = str(getattr(info, "commit_url", "") or info)
    plan["url"] = f"https://huggingface.co/datasets/{repo_id}"
    return plan
