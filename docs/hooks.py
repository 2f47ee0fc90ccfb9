"""MkDocs hook: the command reference is generated from the CLI's own parser at build time, so it cannot drift."""

from __future__ import annotations

MARKER = "<!-- cli-reference -->"


def _reference() -> str:
    from fastsynth.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    parts = []
    for name, p in sub.choices.items():
        p.prog = f"fastsynth {name}"
        parts.append(f"## fastsynth {name}\n\n```text\n{p.format_help().rstrip()}\n```\n")
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, _reference())
    return markdown
