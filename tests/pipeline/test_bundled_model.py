"""The bundled demo (models/): SMART must clearly beat global magnitude on a real trained network.

A guard for the search itself (a sign error in the scores or the gradient, a broken temperature
schedule would pass every shape and budget test but lose here). Short budgets keep it under a minute;
the full-budget figures are in docs/benchmarks.md ("Pruning quality").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_onnx import load_model
from smart_onnx.data import load_dataset
from smart_onnx.hw import load_profile
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundled():
    model = load_model(MODELS / "fashion_resnet.onnx")
    return (model, load_dataset(MODELS / "fashion_calib.npz", model.inputs),
            load_dataset(MODELS / "fashion_eval.npz", model.inputs))


def _accuracy(bundled, method: str, mode: str, target: str | None) -> tuple[float, float]:
    model, calib, held = bundled
    # No refit, no early stopping, no time cap: this guards the search's mask, which the refit
    # (closed-form, for every method) would partly make up for.
    search = SearchConfig(sparsity=0.5, method=method, steps=40, finetune_steps=40, refit=False, validation=0.0,
                          time_budget=None)
    options = PruneOptions(mode=mode, target=target and load_profile(target), search=search, latency=False)
    report = prune(model, calib, held, options).report
    out = next(o for o in report.eval.outputs if o.accuracy is not None)
    assert target is None or report.check.passed
    return out.accuracy, out.reference_accuracy


# Channel mode without a target, as in the quality benchmark: global magnitude may empty a layer there.
@pytest.mark.parametrize("mode,target", [("block", "npu-block"), ("channel", None)])
def test_smart_beats_global_magnitude_at_half_sparsity(bundled, mode: str, target: str | None) -> None:
    smart, dense = _accuracy(bundled, "smart", mode, target)
    magnitude, _ = _accuracy(bundled, "magnitude", mode, target)
    assert dense > 0.9
    assert smart >= magnitude + 0.2, (smart, magnitude)
