"""The prune summary: its sparsity line counts the same weights as its weights line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from smart_onnx.cli.summary import render_summary
from smart_onnx.data import dataset_from_arrays
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.report import PruneReport
from smart_onnx.search import SearchConfig
from tests.transformers import moments_layernorm_model


def test_sparsity_line_is_of_all_prunable_weights_and_names_the_searched_units_apart() -> None:
    # Channel mode reaches only the FFN: the hidden width is an output, so it is frozen.
    model = moments_layernorm_model(hidden_output=True)
    x = np.random.default_rng(1).uniform(0, 2, (32, 12, 16)).astype(np.float32)
    calib, hold = dataset_from_arrays({"x": x}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.4, steps=4, finetune_steps=2, batch_size=8)
    report = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False)).report
    text = render_summary(report, "out.onnx", "out.json")
    counts = re.search(r"prunable weights\s+([\d,]+)\s+([\d,]+)", text).groups()
    before, after = (int(v.replace(",", "")) for v in counts)
    shown = float(re.search(r"sparsity \(weights\)\s+([\d.]+)%", text).group(1)) / 100
    assert abs(shown - (1 - after / before)) < 1e-3  # the two lines agree
    assert abs(report.sparsity.achieved_params - shown) < 1e-3  # and the report says the same
    # The request is of all prunable weights: met to within one FFN channel (its 2 x 64 weights).
    assert 0.4 - 1e-9 <= report.sparsity.achieved_params <= 0.4 + 128 / before
    searched = float(re.search(r"sparsity \(searched units\)\s+([\d.]+)%", text).group(1)) / 100
    assert searched > shown + 0.01  # of the searched units alone it is more: shown apart
    assert abs(searched - report.sparsity.searched) < 1e-3
    assert report.search.sparsity == pytest.approx(0.4 * before / (2 * 64 * 128))  # what the search aimed for


def test_a_degraded_summary_says_what_may_help_after_its_verdict() -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "reports" / "block-out-of-time.json"
    text = render_summary(PruneReport.from_json(fixture.read_text()), "out.onnx", "out.json")
    verdict = text.index("result: DEGRADED")
    assert text.index("what may help:") > verdict
    assert "  - a longer --time-budget: the search stopped at 4 s" in text
    assert "  - a lower --sparsity than 40%" in text


def test_a_faithful_summary_from_few_augmented_samples_says_what_it_did_not_judge() -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "reports" / "block-out-of-time.json"
    report = PruneReport.from_json(fixture.read_text())
    assert report.caveat() is None  # degraded: the remedies say more samples
    report.fidelity.degraded, report.fidelity.warnings = [], []
    assert report.fidelity.faithful and report.training.augment
    text = render_summary(report, "out.onnx", "out.json")
    samples = report.training.calibration_samples + report.training.validation_samples
    verdict = text.index("result: every output faithful")
    assert text.index(f"note: learned from {samples} calibration samples") > verdict
    assert "what may help" not in text
    report.training.augment = False  # enough samples not to augment: nothing to add
    assert "note: learned from" not in render_summary(report, "out.onnx", "out.json")
