"""Reports written by earlier versions read back into a PruneReport and write out byte for byte.

The fixtures in tests/fixtures/reports/ were written by ``smart-onnx prune`` at commit 2e7efa5
(tests/fixtures/reports/make_reports.py): block with --quantize, channel re-planned and stopped
by its time budget, N:M without the refit, block with its search stopped by the budget.
"""

from __future__ import annotations

import json
from dataclasses import replace
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


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_an_earlier_report_reads_as_run_without_the_refits_block_choice(path: Path) -> None:
    report = PruneReport.from_json(path.read_text())
    assert report.search.refit_reselect is False and "refit_reselect" not in report.to_dict()["search"]
    chosen = replace(report, search=replace(report.search, refit_reselect=True))
    assert PruneReport.from_json(chosen.to_json()).search.refit_reselect is True


def _fixture(stem: str) -> PruneReport:
    return PruneReport.from_json((Path(__file__).parent / "fixtures" / "reports" / f"{stem}.json").read_text())


def test_a_degraded_run_is_told_what_limited_it() -> None:
    stopped = _fixture("block-out-of-time")  # the search stopped at its 4 s budget; 86 + 10 held-out samples, augmented
    assert stopped.remedies() == [
        "a longer --time-budget: the search stopped at 4 s (time budget reached after 4 of 40 search steps)",
        "more calibration samples: this run learned from 96, few enough to be augmented",
        "a lower --sparsity than 40%",
    ]
    nm = _fixture("nm-norefit")  # ran every step it asked for: no budget line; its sparsity is the pattern's
    assert nm.remedies() == ["more calibration samples: this run learned from 96, few enough to be augmented"]


def test_a_plan_cut_by_the_budget_names_the_steps_it_asked_for_and_reads_back() -> None:
    report = _fixture("channel-budget")
    report.steps = replace(report.steps, asked=(300, 300))
    assert report.remedies()[0] == ("a longer --time-budget: 2 s fit 120+120 of the 300+300 search + fine-tune "
                                    "steps this run asked for")
    assert PruneReport.from_json(report.to_json()).steps.asked == (300, 300)


def test_a_search_shortened_to_fit_its_deadline_asks_for_more_time() -> None:
    report = _fixture("channel-budget")  # the plan fit its ask; the search then re-planned 120 -> 48 steps
    report.training.search_stopped = None  # and ran them all (this fixture's was cut at 43 of the 48)
    assert report.steps.asked is None
    assert report.remedies()[0] == ("a longer --time-budget: the search fit 2 s in fewer steps "
                                    "(120 -> 48 steps after 5 timed steps)")


def test_a_fine_tune_the_budget_ended_while_it_improved_asks_for_more_time() -> None:
    report = _fixture("channel-budget")
    report.training.search_stopped = report.training.search_replanned = None  # the search ran its plan
    assert report.steps.asked is None and report.remedies()[0].startswith("more calibration samples")
    report.training.finetune_cut = "time budget reached after 887 of 1200 fine-tune steps"
    assert report.remedies()[0] == ("a longer --time-budget: the fine-tune still improved when 2 s ended it "
                                    "(time budget reached after 887 of 1200 fine-tune steps)")
    assert PruneReport.from_json(report.to_json()).training.finetune_cut == report.training.finetune_cut


def test_a_faithful_run_needs_no_remedy() -> None:
    report = _fixture("block-out-of-time")
    report.fidelity.degraded, report.fidelity.warnings = [], []
    assert report.remedies() == []
