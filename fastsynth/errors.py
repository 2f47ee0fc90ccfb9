"""User-facing errors. The CLI prints these as one clear message (no traceback) and exits non-zero."""


class FastsynthError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""

    exit_code = 2


class DataError(FastsynthError):
    """Bad input data: names the file and what is wrong with it."""


class MissingExtraError(FastsynthError):
    """An optional package is needed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import an optional module lazily, or raise a clear MissingExtraError."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{purpose} needs the optional package '{module}' ({exc}). "
            f"Install it with: pip install 'fastsynth[{extra}]'"
        ) from None
