"""devkit.benchdoc.write_section, the one writer of docs/benchmarks.md that every tools/ benchmark uses."""

from __future__ import annotations

from devkit.benchdoc import write_section

HEADING = "## Fuzz soak"


def test_section_replaces_only_its_own_text(tmp_path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\n## A\n\nkeep a\n\n" + HEADING + "\n\nold\n\n## B\n\nkeep b\n")
    write_section(HEADING, "new\n", doc)
    text = doc.read_text()
    assert "old" not in text and "new" in text and "keep a" in text and "keep b" in text
    assert text.index("## A") < text.index(HEADING) < text.index("## B")


def test_section_is_appended_when_missing(tmp_path) -> None:
    fresh = tmp_path / "c.md"
    fresh.write_text("# Benchmarks\n")
    write_section(HEADING, "first\n", fresh)
    assert fresh.read_text() == "# Benchmarks\n\n" + HEADING + "\n\nfirst\n"


def test_heading_prefix_of_another_is_not_replaced(tmp_path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("# Benchmarks\n\n## Fuzz soak (old)\n\nkeep\n")
    write_section(HEADING, "new\n", doc)
    text = doc.read_text()
    assert "keep" in text and text.endswith(HEADING + "\n\nnew\n")
