"""Step budgets: from the data's size, capped by the time budget; the cap bounds a real run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from smart_onnx.search.budget import MAX_STEPS, MIN_STEPS, TRAIN_SHARE, plan_steps


@pytest.mark.parametrize(("samples", "want"), [(64, MIN_STEPS), (1000, 372), (100_000, MAX_STEPS)])
def test_wanted_steps_follow_the_data(samples: int, want: int) -> None:
    plan = plan_steps(steps=None, finetune_steps=None, samples=samples, batch_size=32, step_seconds=None,
                      time_budget=None)
    assert (plan.steps, plan.finetune_steps) == (want, want)
    assert "epochs" in plan.reason


def test_given_steps_are_kept_when_they_fit() -> None:
    plan = plan_steps(steps=50, finetune_steps=20, samples=64, batch_size=32, step_seconds=0.1, time_budget=600)
    assert (plan.steps, plan.finetune_steps) == (50, 20) and "fit" in plan.reason


def test_the_time_budget_shrinks_both_phases_in_proportion() -> None:
    plan = plan_steps(steps=400, finetune_steps=400, samples=1000, batch_size=32, step_seconds=3.5,
                      time_budget=600, elapsed=20)
    fits = int((TRAIN_SHARE * 600 - 20) / 3.5)
    assert plan.steps + plan.finetune_steps <= fits and plan.steps == plan.finetune_steps
    assert "wanted" in plan.reason and "3.50 s per step" in plan.reason


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
    monkeypatch.setattr(search_module, "_plan", lambda trainer, config, begin: StepPlan(2, 3, 0.01, "test plan"))
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
