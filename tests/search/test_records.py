"""The report's training log, curves and stage times as typed records, written as the JSON always was."""

from __future__ import annotations

from smart_onnx.report import QuantizeSeconds
from smart_onnx.search import History, PruneSeconds, RefitLog, TrainingLog


def test_the_training_log_writes_what_happened_only_and_the_fine_tunes_stop_always() -> None:
    log = TrainingLog(features=["a"], feature_weight=1.0, augment=True, calibration_samples=86,
                      validation_samples=10, early_stopping="on held-out samples")
    assert list(log.to_dict()) == ["features", "feature_weight", "augment", "calibration_samples",
                                   "validation_samples", "early_stopping", "stopped"]
    log.search_stopped, log.refit = "time budget reached after 4 of 40 search steps", RefitLog(stopped="budget")
    data = log.to_dict()
    assert list(data)[-3:] == ["search_stopped", "refit", "stopped"] and data["refit"] == {"stopped": "budget"}
    assert TrainingLog.from_dict(data) == log


def test_a_refit_that_ran_writes_its_numbers() -> None:
    refit = RefitLog(layers=2, skipped={"fc": "too few rows"}, mean_error_before=0.8, mean_error_after=None, passes=1)
    assert refit.to_dict() == {"layers": 2, "skipped": {"fc": "too few rows"}, "mean_error_before": 0.8,
                               "mean_error_after": None, "passes": 1}
    assert RefitLog.from_dict(refit.to_dict()) == refit


def test_curves_missing_from_an_old_report_read_as_empty() -> None:
    history = History.from_dict({"loss": [1.0, 0.5], "tau": [1.0, 0.1], "sparsity": [0.5, 0.5]})
    assert history.finetune_loss == [] and history.validation_loss == []
    assert list(history.to_dict()) == ["loss", "tau", "sparsity", "finetune_loss", "validation_loss"]


def test_stage_seconds_in_the_order_they_run_and_only_those_that_ran() -> None:
    seconds = PruneSeconds(eval=1.0, search=2.0, analysis=0.5)
    assert seconds.items() == [("analysis", 0.5), ("search", 2.0), ("eval", 1.0)] and seconds.total == 3.5
    assert PruneSeconds.from_dict(seconds.to_dict()) == seconds
    assert QuantizeSeconds(calibrate_and_quantize=1.0, verify=0.25).to_dict() == {"calibrate_and_quantize": 1.0,
                                                                                   "verify": 0.25}
