"""Validate a synthetic dataset folder and upload it to the Hugging Face Hub.

What is uploaded: README.md (the card), fastsynth.json (the manifest), data/train-*.parquet (the shards) and,
when ``fastsynth evaluate`` wrote them, the plots of synthetic data and of numbers (``SAFE_EVAL_FILES``) and
eval/metrics.json. Nothing else from the folder: never ``eval/samples_real.png`` (real, possibly patient,
images). The card and the JSON files go up as public copies (``public_text`` / ``public_json``): local paths
become their last component, the user name is removed, and the stems of nearest real neighbours are dropped
(their distances stay).

Privacy: an existing repository keeps its visibility on ``create_repo``; publish reads it and refuses when it
differs from what was asked (``change_visibility=True`` changes it), and says which it is before uploading.

Resumable: shards go up in several commits, then the card and metadata in a last one; files already on the
Hub with the same content (LFS sha256 or git blob id) are skipped, so running the same command again after an
interruption uploads only what is missing, and remote shards that are not part of the dataset are deleted.

The token comes from ``huggingface_hub.get_token()`` (``HF_TOKEN`` or the stored ``hf auth login`` token) or
the ``token`` argument. It is only handed to huggingface_hub calls: never printed, logged, or written; error
messages are scrubbed of it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import FastsynthError
from ..utils import public_json, public_text

REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9][\w.\-]{0,95}$")
# plots that show only synthetic data or numbers; eval/samples_real.png (held-out real images) is never one
SAFE_EVAL_FILES = ("eval/samples_synthetic.png", "eval/metrics.png", "eval/mask_stats.png",
                   "eval/downstream_dice.png", "eval/metrics.json", "eval/report.html")
UPLOAD_PATTERNS = ("README.md", "fastsynth.json", "data/train-*.parquet") + SAFE_EVAL_FILES
# uploaded as public copies, last (the report rendered again from the public metrics, without the real images)
METADATA_FILES = ("README.md", "fastsynth.json", "eval/metrics.json", "eval/report.html")
SHARDS_PER_COMMIT = 50
SALT_FILE = ".publish-salt"  # the dataset's secret salt of the hashed source column; never uploaded


def source_salt(root: Path) -> str:
    """The dataset's salt for hashing the ``source`` column (made once, kept in the folder, never uploaded): the
    same source gets the same hash in every shard and every upload, and a known file name cannot be looked up."""
    import secrets

    p = root / SALT_FILE
    if p.is_file() and len(p.read_text().strip()) >= 32:
        return p.read_text().strip()
    salt = secrets.token_hex(16)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(salt + "\n")
    os.replace(tmp, p)
    return salt


def hash_source(source: str, salt: str) -> str:
    """A real file stem (often a patient identifier) as it goes up: a salted hash, empty stays empty."""
    if not source:
        return ""
    return "src-" + hashlib.sha256(f"{salt}\0{source}".encode()).hexdigest()[:16]


def public_shard(path: Path, salt: str) -> bytes | None:
    """The shard with its ``source`` column hashed (``hash_source``), or None when it holds no source names."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "source" not in table.column_names:
        return None
    col = table.column("source").to_pylist()
    if not any(col):
        return None
    i = table.column_names.index("source")
    table = table.set_column(i, "source", pa.array([hash_source(s or "", salt) for s in col], pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def real_pixel_rows(manifest: dict) -> int:
    """How many rows keep real pixels: every row of an inpaint dataset (outside each regenerated region)."""
    return int(manifest.get("n", 0)) if manifest.get("mode") == "inpaint" else 0


def real_pixels_notice(manifest: dict) -> str:
    """The lines a card opens with when rows hold real pixels (``--include-real-pixels``)."""
    lic = ((manifest.get("model") or {}).get("training_data") or {}).get("license") or "unknown"
    return (f"> **This dataset contains real image pixels.** All {real_pixel_rows(manifest)} rows were made with "
            "`--mode inpaint`: outside each regenerated region every pixel (and mask value) is copied from a real "
            f"source image. Those pixels stay under the source images' licence (the generating model's training "
            f"data is licensed {lic}); they were published on purpose (`--include-real-pixels`).\n\n")


def public_bytes(root: Path, rel: str, include_real_pixels: bool = False) -> bytes | None:
    """The public copy of a metadata file (card or JSON), or None for a file that goes up as it is."""
    if rel not in METADATA_FILES:
        return None
    if rel == "eval/report.html":  # never the local page (it shows real held-out images): a public one
        from ..dataset import read_manifest
        from ..dataset.report import render_report

        metrics = public_json(json.loads((root / "eval" / "metrics.json").read_text()))
        return public_text(render_report(metrics, root / "eval", public_json(read_manifest(root)),
                                         include_real=False)).encode()
    text = (root / rel).read_text()
    if rel == "README.md" and include_real_pixels:  # said in the card's first lines, after its YAML header
        from ..dataset import read_manifest

        notice = real_pixels_notice(read_manifest(root))
        if text.startswith("---"):
            end = text.find("\n---", 3)
            end = text.find("\n", end + 4) + 1 if end >= 0 else 0
            text = text[:end] + "\n" + notice + text[end:]
        else:
            text = notice + text
    if rel.endswith(".json"):
        try:
            return (json.dumps(public_json(json.loads(text)), indent=2, sort_keys=True) + "\n").encode()
        except json.JSONDecodeError as exc:
            raise FastsynthError(f"{root / rel}: invalid JSON ({exc}); run `fastsynth evaluate` again") from None
    return public_text(text).encode()


def plan_upload(root: str | os.PathLike) -> list[dict]:
    """The files that would be uploaded: [{"path": relative posix path, "bytes": size}], sorted."""
    root = Path(root)
    out = []
    for f in sorted(root.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        if rel.endswith(".tmp") or not any(fnmatch.fnmatchcase(rel, p) for p in UPLOAD_PATTERNS) \
                or rel == "eval/samples_real.png":
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


def _remote_files(api, repo_id: str, revision: str | None, tok: str) -> dict:
    """{path: (lfs sha256 or None, git blob id or None)} of the files on the Hub at ``revision``."""
    try:
        entries = list(api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True,
                                          token=tok))
    except Exception as exc:
        if type(exc).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError") \
                or _http_status(exc) == 404:
            return {}
        raise
    out = {}
    for e in entries:
        lfs = getattr(e, "lfs", None)
        if lfs is None and getattr(e, "blob_id", None) is None:
            continue  # a folder
        sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        out[e.path] = (sha, getattr(e, "blob_id", None))
    return out


def _same_content(data: bytes | Path, remote: tuple) -> bool:
    sha256, blob_id = remote
    if isinstance(data, Path):
        from ..utils import file_sha256

        if sha256:
            return file_sha256(data) == sha256
        data = data.read_bytes()
    if sha256:
        return hashlib.sha256(data).hexdigest() == sha256
    return blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _visibility(api, repo_id: str, private: bool, change_visibility: bool, tok: str,
                say: Callable[[str], None]) -> str:
    """Create the repo with the asked visibility, or check an existing one's (and change it when allowed)."""
    want = "private" if private else "public"
    try:
        info = api.repo_info(repo_id, repo_type="dataset", token=tok)
    except Exception as exc:
        if type(exc).__name__ != "RepositoryNotFoundError" and _http_status(exc) != 404:
            raise
        info = None
    if info is None:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=tok)
        say(f"created datasets/{repo_id} ({want})")
        return want
    have = "private" if getattr(info, "private", False) else "public"
    if have != want:
        if not change_visibility:
            flag = "--private" if have == "private" else "no --private"
            raise FastsynthError(f"datasets/{repo_id} exists and is {have}, but {want} was asked; nothing was "
                                 f"uploaded. Run again with {flag} to keep it {have}, or add --change-visibility "
                                 f"to make it {want}")
        if hasattr(api, "update_repo_settings"):
            api.update_repo_settings(repo_id, private=private, repo_type="dataset", token=tok)
        else:  # huggingface_hub < 0.24
            api.update_repo_visibility(repo_id, private=private, repo_type="dataset", token=tok)
        say(f"datasets/{repo_id} existed as {have}; changed to {want}")
        return want
    say(f"datasets/{repo_id} exists ({have})")
    return have


def _upload(api, root: Path, repo_id: str, revision: str | None, files: list[dict], msg: str, tok: str,
            say: Callable[[str], None], include_real_pixels: bool = False,
            keep_source_names: bool = False) -> tuple[list, int]:
    """Commit the shards in batches, then the public metadata copies; skip what the Hub already holds.
    Returns (commit infos, files skipped)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    remote = _remote_files(api, repo_id, revision, tok)
    shards, meta = [], []
    skipped = 0
    salt = None if keep_source_names else source_salt(root)
    for f in files:
        rel = f["path"]
        pub = public_bytes(root, rel, include_real_pixels)
        if pub is None and salt is not None and rel.startswith("data/") and rel.endswith(".parquet"):
            pub = public_shard(root / rel, salt)  # real file stems (patient identifiers) go up hashed
        data = pub if pub is not None else root / rel
        if rel in remote and _same_content(data, remote[rel]):
            skipped += 1
            continue
        op = CommitOperationAdd(path_in_repo=rel, path_or_fileobj=data if pub is not None else str(data))
        (meta if rel in METADATA_FILES or rel.startswith("eval/") else shards).append(op)
    wanted = {f["path"] for f in files}
    stale = [CommitOperationDelete(path_in_repo=p) for p in sorted(remote)
             if fnmatch.fnmatchcase(p, "data/train-*.parquet") and p not in wanted]
    if skipped:
        say(f"{skipped} file(s) already on the Hub with the same content: skipped")
    batches = [shards[i:i + SHARDS_PER_COMMIT] for i in range(0, len(shards), SHARDS_PER_COMMIT)]
    if meta or stale or not batches:
        batches.append(meta + stale)
    infos = []
    from tqdm.auto import tqdm

    total = sum(len(b) for b in batches)
    bar = tqdm(total=total, unit="file", desc="uploading", disable=total == 0 or not _show_progress(say))
    for i, ops in enumerate(batches):
        bar.update(len(ops))
        if not ops:
            continue
        part = f" (part {i + 1}/{len(batches)})" if len(batches) > 1 else ""
        infos.append(api.create_commit(repo_id, ops, commit_message=msg + part, repo_type="dataset",
                                       revision=revision, token=tok))
    bar.close()
    return infos, skipped


def _show_progress(say) -> bool:
    """A bar for the command line (``say`` is print), none for library callers that pass their own logger."""
    return say is print


def publish(root: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
            dry_run: bool = False, token: str | None = None, api=None, load_check: bool = True,
            commit_message: str | None = None, change_visibility: bool = False,
            log: Callable[[str], None] | None = None, include_real_pixels: bool = False,
            keep_source_names: bool = False) -> dict:
    """Validate ``root`` and upload it as the dataset repo ``repo_id``. Returns what was (or would be) sent.

    A dataset whose rows keep real pixels (inpaint) is refused unless ``include_real_pixels`` (the card then says
    so in its first lines); the ``source`` column (real file stems) goes up hashed with a per-dataset salt unless
    ``keep_source_names``."""
    if not REPO_ID_RE.match(repo_id or ""):
        raise FastsynthError(f"--repo-id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")
    root = Path(root)
    report = validate_dataset(root, load_check=load_check)
    from ..dataset import read_manifest

    n_real = real_pixel_rows(read_manifest(root))
    if n_real and not include_real_pixels:
        raise FastsynthError(f"{root}: all {n_real} rows were made with --mode inpaint and keep the real source "
                             "image's pixels outside each regenerated region, so publishing them shares real (possibly "
                             "patient) images; nothing was uploaded. Add --include-real-pixels if the source data's "
                             "licence and consent allow it (the card will say so in its first lines)")
    files = plan_upload(root)
    plan = {"repo_id": repo_id, "repo_type": "dataset", "private": private, "revision": revision or "main",
            "real_pixel_rows": n_real, "source_names": "kept" if keep_source_names else "hashed", "files": files, "bytes": sum(f["bytes"] for f in files), "validation": report, "dry_run": dry_run}
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
        say = log or (lambda s: None)
        plan["visibility"] = _visibility(api, repo_id, private, change_visibility, tok, say)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True, token=tok)
        msg = commit_message or f"Upload fastsynth dataset ({report['rows']} pairs)"
        say(f"uploading {len(files)} files to datasets/{repo_id} ({plan['visibility']})")
        infos, plan["skipped"] = _upload(api, root, repo_id, revision, files, msg, tok, say, include_real_pixels,
                                         keep_source_names)
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
    plan["private"] = plan["visibility"] == "private"
    plan["commit_url"] = str(getattr(infos[-1], "commit_url", "") or infos[-1]) if infos else None
    plan["url"] = f"https://huggingface.co/datasets/{repo_id}"
    return plan
