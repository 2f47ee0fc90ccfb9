"""Small shared helpers: hashing files, the on-disk cache folder, atomic JSON writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "FASTSYNTH_CACHE"


def cache_dir() -> Path:
    """``$FASTSYNTH_CACHE`` or ``~/.cache/fastsynth`` (never the package folder)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fastsynth")


_SHA_CACHE: dict = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised per (path, mtime, size)."""
    p = Path(path)
    st = p.stat()
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a per-process temporary name and rename it into place."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)
