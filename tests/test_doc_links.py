"""Every relative link in the README and docs/ resolves to a file inside this repository (issue 16)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "models").glob("*.md")])
# [text](target) and [text]: target; the target ends at white space or the closing parenthesis.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def _relative_links(page: Path) -> list[str]:
    targets = [a or b for a, b in LINK.findall(page.read_text())]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def test_pages_are_found() -> None:
    assert ROOT / "README.md" in PAGES and ROOT / "docs" / "design.md" in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links outside the repository or to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page: Path) -> None:
    assert "../shared" not in page.read_text()


def test_the_link_pattern_reads_links() -> None:
    text = 'see [a](docs/a.md), [b](b.md "title"), [web](https://x.org), [top](#top)\n[ref]: ../out.md\n'
    assert [a or b for a, b in LINK.findall(text)] == ["docs/a.md", "b.md", "https://x.org", "#top", "../out.md"]
