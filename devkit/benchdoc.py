"""The one writer of ``docs/benchmarks.md``: replace one ``## `` section, leave the others as they are."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DOC", "write_section"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, body: str, path: Path = DOC) -> None:
    """Replace the text from ``heading`` up to the next ``## `` heading with ``body`` (or append the section).

    Args:
        heading: the section's heading line, e.g. ``"## Fuzz soak"``.
        body: the section's text below the heading.
        path: the markdown file (created with a ``# Benchmarks`` title if missing).
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
