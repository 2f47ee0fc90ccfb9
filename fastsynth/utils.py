"""Small shared helpers at the bottom of the import graph: hashing files, the on-disk cache folder, atomic
writes, resolving the ``--device`` option (torch is imported inside the function that needs it), the CPU's
instruction sets."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import re
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


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text or bytes to a per-process temporary name beside ``path`` and rename it into place: readers
    see the old file or the new one, never half of it. The one atomic writer of the package."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a per-process temporary name and rename it into place."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """A JSON file's content, or one clear FastsynthError naming the file when it is unreadable or corrupt."""
    from .errors import FastsynthError

    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FastsynthError(f"{p}: corrupt {what} ({type(exc).__name__}: {exc}); restore or remove it") from None


def resolve_device(device: str):
    """The torch.device of a ``--device`` option: auto (CUDA when available, this rank's GPU), cpu, cuda[:N]."""
    import torch

    from .errors import FastsynthError

    if device == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
            else torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FastsynthError(f"--device {device}: no CUDA GPU is available here; use --device cpu or auto")
    if device.startswith("cuda:"):
        idx = device.split(":", 1)[1]
        if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
            raise FastsynthError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise FastsynthError(f"--device {device!r}: choose auto, cpu or cuda[:N]")
    return torch.device(device)


# a local path: absolute (/...), home-relative (~/...) or relative to a checkout (./..., ../...); not the
# second half of a word ("pairs/s"), of a URL (https://...) or of a relative path inside the dataset (data/...)
_PATH_RE = re.compile(r"(?<![\w.:/~\-])(?:~|\.{1,2})?/[^\s'\"`<>|,;()\[\]{}]+")
# a relative path as the value of an option or the folder argument of a fastsynth command; never a URL
_ARG_PATH_RE = re.compile(r"((?:(?<!\S)--(?!repo-id\b|revision\b)[A-Za-z][\w-]*[ =]|\bfastsynth (?:evaluate|publish|filter|info|export) ))"
                          r"((?![a-z]+://)[^\s'\"`<>|,;()\[\]{}]*/[^\s'\"`<>|,;()\[\]{}]*)")


def hub_license(lic: str | None) -> str:
    """A licence as the Hub's identifier ("CC-BY-SA 4.0" / "CC BY-SA 4.0" -> "cc-by-sa-4.0"); "other" if unknown."""
    if not lic:
        return "other"
    s = re.sub(r"[\s_]+", "-", str(lic).strip().lower())
    m = re.fullmatch(r"cc-?(by(?:-nc)?(?:-sa|-nd)?)-?(\d\.\d)", s.replace("--", "-"))
    return f"cc-{m.group(1)}-{m.group(2)}" if m else s



def is_share_alike(lic: str | None) -> bool:
    """Whether a licence (any spelling :func:`hub_license` reads) is share-alike (CC BY-SA, CC BY-NC-SA)."""
    return bool(lic) and "sa" in hub_license(lic).split("-")


def public_text(text: str) -> str:
    """``text`` with every local path replaced by its last component and the user's name removed."""
    def last(m):
        path = m if isinstance(m, str) else m.group(0)
        parts = [p for p in path.split("/") if p not in ("", ".", "..", "~")]
        return parts[-1] if parts else "."

    out = _PATH_RE.sub(last, text)
    # relative paths given to a command (``--out runs/kvasir``, ``fastsynth evaluate out/ds``): their last component
    out = _ARG_PATH_RE.sub(lambda m: m.group(1) + last(m.group(2)), out)
    try:
        user = getpass.getuser()
    except Exception:  # no user database entry (containers)
        user = ""
    if len(user) >= 3:
        out = re.sub(rf"(?<![\w]){re.escape(user)}(?![\w])", "<user>", out)
    return out


def public_model_name(model) -> str:
    """How a model is named in what people share: ``bundled`` / ``bundled-fast`` (or None: ``bundled``) as such, a
    folder by its name (a training run's ``model/`` as ``RUN/model``), never by where it lies on this machine."""
    if model is None or str(model) in ("", "bundled", "default", "bundled-fast"):
        return str(model or "bundled")
    p = Path(str(model)).resolve()
    return f"{p.parent.name}/{p.name}" if p.name == "model" and p.parent.name else p.name


def public_json(obj, drop_keys=frozenset({"nearest", "nearest_train", "per_image_file"})):
    """A copy of a JSON value fit for publishing: no local paths or user names, and without the keys
    ``drop_keys`` (by default those naming real images: the memorization audit's nearest neighbours)."""
    if isinstance(obj, dict):
        return {k: public_json(v, drop_keys) for k, v in obj.items() if k not in drop_keys}
    if isinstance(obj, list):
        return [public_json(v, drop_keys) for v in obj]
    if isinstance(obj, str):
        return public_text(obj)
    return obj


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


def cpu_has_bf16(info: dict | None = None) -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX512_BF16 or AMX-BF16): there bf16 convolutions run at up to
    twice fp32's rate; elsewhere bf16 is emulated and slower than fp32."""
    flags = (info or cpu_info())["flags"] or {}
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def resolve_mixed_precision(mp: str, device_type: str) -> str:
    """``--mixed-precision auto`` for training and distillation: bf16 (or fp16 where a GPU lacks bf16) on CUDA;
    on the CPU bf16 autocast where the CPU has native bf16 (AVX512_BF16 / AMX: 1.56x the fp32 steps per second
    for the bundled model on a 1-thread AVX512_BF16 EPYC, ``benchmarks/results/train_precision_cpu.json``), else
    fp32 ("no"). The weights and the optimiser stay fp32 either way."""
    if mp != "auto":
        return mp
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"
