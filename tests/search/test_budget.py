"""Step budgets: from the data's size, capped by the time budget; the cap bounds a real run."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from smart_onnx.search.budget import (
    DEFAULT_BATCH,
    MAX_STEPS,
    MIN_BATCH,
    MIN_STEPS,
    TRAIN_SHARE,
    plan_steps,
    smaller_batch,
)


@pytest.mark.parametrize(("samples", "want"), [(64, MIN_STEPS), (1000, 372), (100_000, MAX_STEPS)])
def test_wanted_steps_follow_the_data(samples: int, want: int) -> None:
    plan = plan_steps(steps=None, finetune_steps=None, samples=samples, batch_size=32, step_seconds=None,
                      time_budget=None)
    assert (plan.steps, plan.finetune_steps) == (want, want)
    assert "epochs" in plan.reason


def test_given_steps_are_kept_when_they_fit() -> None:
    plan = plan_steps(steps=50, finetune_steps=20, samples=64, batch_size=32, step_seconds=0.1, time_budget=600)
    assert (plan.steps, plan.finetune_steps) == (50, 20) and "fit" in plan.reason
    assert plan.asked is None and "asked" not in plan.to_dict()  # nothing was cut


def test_the_time_budget_shrinks_both_phases_in_proportion() -> None:
    plan = plan_steps(steps=400, finetune_steps=400, samples=1000, batch_size=32, step_seconds=3.5,
                      time_budget=600, elapsed=20)
    fits = int((TRAIN_SHARE * 600 - 20) / 3.5)
    assert plan.steps + plan.finetune_steps <= fits and plan.steps == plan.finetune_steps
    assert "wanted" in plan.reason and "3.50 s per step" in plan.reason
    assert plan.asked == (400, 400) and plan.to_dict()["asked"] == [400, 400]  # what the report tells the user


def test_a_plan_the_budget_cuts_asks_for_a_smaller_batch() -> None:
    # EfficientNet-Lite0 on 64 samples: 7.5 s a step at batch 32, 100 + 100 wanted, 63 fit.
    cut = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=32, step_seconds=7.5, time_budget=600)
    assert cut.wanted == (100, 100) and cut.steps + cut.finetune_steps == 64
    assert smaller_batch(cut, 32, 64) == 8  # 32 x 64 / 200 = 10.2, down to a power of two
    fits = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=32, step_seconds=1.0, time_budget=600)
    assert fits.wanted is None and smaller_batch(fits, 32, 64) is None
    nothing_fits = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=32, step_seconds=1e3,
                              time_budget=600)
    assert smaller_batch(nothing_fits, 32, 64) == MIN_BATCH
    assert smaller_batch(nothing_fits, MIN_BATCH, 64) is None  # already as small as it goes
    # A re-plan at the smaller batch asks for the first plan's samples.
    again = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=8, step_seconds=1.2, time_budget=600,
                       wanted=(400, 400))
    assert again.steps == again.finetune_steps == 200 and "in batches of 8" in again.reason
    assert "wanted" not in again.to_dict()  # not a report field


def test_augmented_data_asks_for_the_most_steps_and_the_budget_decides() -> None:
    """Augmented views are new data at every pass: MAX_STEPS per phase are asked for and the budget caps them, but
    only the data's own count (12 epochs) may shrink the batch."""
    free = plan_steps(steps=None, finetune_steps=None, samples=60, batch_size=32, step_seconds=None, time_budget=None,
                      augmented=True)
    assert (free.steps, free.finetune_steps) == (MAX_STEPS, MAX_STEPS) and "augmented" in free.reason
    # MiniLM on 60 sentences: 0.4 s a step, all 800 fit 480 s.
    fits = plan_steps(steps=None, finetune_steps=None, samples=60, batch_size=32, step_seconds=0.4, time_budget=600,
                      augmented=True)
    assert (fits.steps, fits.finetune_steps) == (MAX_STEPS, MAX_STEPS)
    # 1.7 s a step: 282 of the 800 fit, more than the data's own 100 + 100, so the batch stays.
    part = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=32, step_seconds=1.7, time_budget=600,
                      augmented=True)
    assert part.steps == part.finetune_steps and part.steps + part.finetune_steps == int(480 / 1.7)
    assert part.wanted is None and smaller_batch(part, 32, 64) is None and "augmented" in part.reason
    # 7.5 s a step: not even the data's own count fits, so the batch shrinks for that count, as without augmentation.
    cut = plan_steps(steps=None, finetune_steps=None, samples=64, batch_size=32, step_seconds=7.5, time_budget=600,
                     augmented=True)
    assert cut.wanted == (MIN_STEPS, MIN_STEPS) and smaller_batch(cut, 32, 64) == 8
    # Counts the caller gives are kept.
    given = plan_steps(steps=50, finetune_steps=20, samples=64, batch_size=32, step_seconds=0.1, time_budget=600,
                       augmented=True)
    assert (given.steps, given.finetune_steps) == (50, 20)


def test_prune_shrinks_a_batch_not_given_to_fit_the_budget_and_reports_it() -> None:
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    options = {"mode": "block", "block": (4, 4, 1, 1), "latency": False}
    search = SearchConfig(sparsity=0.5, time_budget=0.01, validation=0.0, augment=False)  # nothing fits
    report = prune(model, data, None, PruneOptions(**options, search=search)).report
    assert report.search.batch_size == MIN_BATCH and "in batches of 4" in report.steps.reason
    given = SearchConfig(sparsity=0.5, time_budget=0.01, validation=0.0, augment=False, batch_size=16)
    assert prune(model, data, None, PruneOptions(**options, search=given)).report.search.batch_size == 16
    unhurried = SearchConfig(sparsity=0.5, steps=2, finetune_steps=2, time_budget=None, augment=False)
    assert prune(model, data, None, PruneOptions(**options, search=unhurried)).report.search.batch_size == DEFAULT_BATCH


def test_time_budget_bounds_a_run() -> None:
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    start = time.perf_counter()
    search = SearchConfig(sparsity=0.5, steps=100_000, finetune_steps=100_000, batch_size=8, time_budget=3.0)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=search))
    wall = time.perf_counter() - start
    steps = outcome.report.steps
    assert steps.steps + steps.finetune_steps < 200_000 and "budget" in steps.reason
    ran = len(outcome.report.history.loss) + len(outcome.report.history.finetune_loss)
    assert ran <= steps.steps + steps.finetune_steps
    assert wall < 60  # 100k + 100k steps would take hours; the budget (3 s) plus the fixed stages is what runs


def test_a_planned_fine_tune_runs_on_to_the_datas_count_while_the_deadline_allows(monkeypatch) -> None:
    import smart_onnx.search.search as search_module
    from smart_onnx.search.budget import StepPlan, wanted_steps

    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    # A plan that under-estimated the time left: 2 + 3 steps where the (generous) budget fits far more.
    monkeypatch.setattr(search_module, "_plan", lambda *_: StepPlan(2, 3, 0.01, "test plan"))
    search = SearchConfig(sparsity=0.5, batch_size=8, time_budget=600.0, validation=0.0, augment=False)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=search))
    history = outcome.report.history
    assert len(history.loss) == 2
    assert len(history.finetune_loss) == wanted_steps(40, 8) > 3
    # Steps the caller gave are kept as given.
    given = SearchConfig(sparsity=0.5, batch_size=8, time_budget=600.0, validation=0.0, augment=False,
                         finetune_steps=3)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=given))
    assert len(outcome.report.history.finetune_loss) == 3


@pytest.mark.parametrize("held_out", ["falling", "rising"])
def test_a_fitting_plan_on_augmented_data_runs_its_fine_tune_on_while_the_held_out_loss_falls(
        monkeypatch, held_out) -> None:
    """Views are new data at every step: where the plan fit the budget, the fine-tune runs on past its planned
    steps (to FINETUNE_RUN_ON times them) for as long as early stopping lets it."""
    import smart_onnx.search.search as search_module
    from smart_onnx.search.budget import StepPlan
    from smart_onnx.search.trainer import Trainer

    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    fits, cut = StepPlan(2, 5, 0.01, "test plan"), StepPlan(2, 5, 0.01, "test plan, cut", asked=(400, 400))
    planned = {"plan": fits}
    monkeypatch.setattr(search_module, "_plan", lambda *_: planned["plan"])
    monkeypatch.setattr(search_module, "wanted_steps", lambda *_: 5)  # the data's own count: the plan's
    losses = iter(range(100)) if held_out == "rising" else iter(range(100, 0, -1))
    monkeypatch.setattr(Trainer, "validation_loss", lambda self, transforms: float(next(losses)))
    options = {"mode": "block", "block": (4, 4, 1, 1), "latency": False}
    search = SearchConfig(sparsity=0.5, batch_size=8, time_budget=600.0, validation=0.0, patience=1)
    report = prune(model, data, None, PruneOptions(**options, search=search)).report
    longest = 5 * search_module.FINETUNE_RUN_ON
    # Checked every 10 steps (the planned 5's pace): a rising loss stops the phase at its first check.
    assert len(report.history.finetune_loss) == (longest if held_out == "falling" else 10)
    assert report.training.finetune_run_on == (f"5 fine-tune steps planned; up to {longest} while the held-out "
                                               "loss improves, within the time budget")
    # Without views (the data as it is), without a budget or where the budget cut the plan: the plan's steps.
    for config, plan in ((replace(search, augment=False), fits), (replace(search, time_budget=None), fits),
                         (search, cut)):
        planned["plan"] = plan
        report = prune(model, data, None, PruneOptions(**options, search=config)).report
        assert report.training.finetune_run_on is None and len(report.history.finetune_loss) <= 5


@pytest.mark.parametrize("past", ["share", "deadline"])
def test_the_refit_paces_to_its_share_of_the_time_left_and_stops_only_at_the_deadline(monkeypatch, past) -> None:
    """Under a time budget the refit paces its views to REFIT_SHARE of what the search leaves, the fine-tune
    the rest: first in line and outside the step plan, the refit used to take all of it (MiniLM under load: 1
    fine-tune step). Past its share it still fits every layer: a refit cut part way leaves the layers after it
    trained for the inputs the search gave them. Only the training deadline cuts it."""
    import smart_onnx.search.search as search_module
    from smart_onnx.search.distributed import clock

    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    seen = {}
    refit, finetune = search_module._refit, search_module.FinetunePhase

    def watched_refit(*args):
        seen["refit"] = (clock(), *args[-2:])
        gone = clock() - 1.0
        return refit(*args[:-2], gone, gone if past == "deadline" else args[-1])

    def watched_finetune(*args, **kwargs):
        seen["finetune"] = args[-1]
        return finetune(*args, **kwargs)

    monkeypatch.setattr(search_module, "_refit", watched_refit)
    monkeypatch.setattr(search_module, "FinetunePhase", watched_finetune)
    search = SearchConfig(sparsity=0.5, steps=2, finetune_steps=2, batch_size=8, time_budget=600.0, augment=False)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=search))
    started, share_end, deadline = seen["refit"]
    left = seen["finetune"] - started
    assert left > 0 and deadline == seen["finetune"]
    assert share_end - started == pytest.approx(left * search_module.REFIT_SHARE, rel=0.01)
    refit_log = outcome.report.training.refit
    if past == "share":
        assert refit_log.stopped is None and refit_log.layers > 1
    else:
        assert refit_log.stopped.startswith("time budget reached after 1 of")
