"""Small shared helpers: hashing files, the on-disk cache folder, atomic JSON writes, the CPU's instruction sets."""

from __future__ import annotations

import hashlib
import json
import os
import platform
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


# /proc/cpuinfo flag -> what it means for inference speed (bf16 / int8 paths differ with them)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU model and the instruction sets that decide CPU inference speed, from ``/proc/cpuinfo`` (Linux).

    ``flags`` maps each of :data:`CPU_FLAGS` to True/False; it is None where ``/proc/cpuinfo`` cannot be read
    (other systems), so a missing flag is never reported as absent. ``cpuinfo``: the file's text (for tests).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = None, None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and flags is None:  # x86; the first processor's line stands for all
            flags = set(value.split())
        if model is not None and flags is not None:
            break
    return {"model": model or platform.processor() or platform.machine(),
            "flags": None if flags is None else {f: f in flags for f in CPU_FLAGS}}
