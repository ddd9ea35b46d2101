"""Reports written by earlier versions read back into a PruneReport and write out byte for byte.

The fixtures in tests/fixtures/reports/ were written by ``smart-onnx prune`` at commit 2e7efa5
(tests/fixtures/reports/make_reports.py): block with --quantize, channel re-planned and stopped
by its time budget, N:M without the refit, block with its search stopped by the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smart_onnx.report import PruneReport

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "reports").glob("*.json"))


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 4


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_an_earlier_report_loads_and_writes_back_the_same_bytes(path: Path) -> None:
    text = path.read_text()
    report = PruneReport.from_json(text)
    assert report.to_json() == text
    assert PruneReport.from_dict(json.loads(text)) == report
