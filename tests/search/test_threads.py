"""The thread count a search trains with: torch's, halved while timed steps are clearly faster, or the caller's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.report import PruneReport
from smart_onnx.search import SearchConfig
from smart_onnx.search.threads import FASTER, MIN_STEP_SECONDS, choose_threads


def _timer(seconds: dict[int, float]):
    calls = []

    def time_step(threads: int) -> float:
        calls.append(threads)
        return seconds[threads]

    return time_step, calls


def test_idle_cores_keep_torchs_count_after_one_slower_halving() -> None:
    time_step, calls = _timer({1: 0.40})
    choice = choose_threads(2, 0.26, time_step)
    assert choice.threads == 2 and choice.step_seconds == 0.26 and calls == [1]
    assert choice.timed and choice.note() == "2 threads: 0.26 s a step (1: 0.40 s)"


def test_a_busy_machine_halves_while_each_halving_is_faster() -> None:
    # MiniLM beside one busy process on 2 cores: 0.79 s a step at 2 threads, 0.39 s at 1.
    time_step, calls = _timer({1: 0.39})
    choice = choose_threads(2, 0.79, time_step)
    assert choice.threads == 1 and choice.tried == ((2, 0.79), (1, 0.39)) and calls == [1]
    assert choice.note().startswith("1 thread of 2: 0.39 s a step (2: 0.79 s;")
    # A container given 2 of 16 cores: 8, 4 and 2 are each faster; 1, slower again, ends the halving at 2.
    time_step, calls = _timer({8: 2.0, 4: 1.1, 2: 0.5, 1: 0.9})
    choice = choose_threads(16, 4.0, time_step)
    assert choice.threads == 2 and calls == [8, 4, 2, 1]


def test_a_halving_within_the_noise_is_not_taken_and_a_short_step_is_not_timed_again() -> None:
    time_step, calls = _timer({2: 1.0 * FASTER + 0.01})
    assert choose_threads(4, 1.0, time_step).threads == 4 and calls == [2]
    time_step, calls = _timer({1: 0.001})
    short = choose_threads(2, MIN_STEP_SECONDS * 0.9, time_step)
    assert short.threads == 2 and not short.timed and calls == []


def test_threads_must_be_positive() -> None:
    with pytest.raises(ConstraintError, match="threads"):
        SearchConfig(threads=0)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _model_and_data():
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((24, *example.shape[1:])).astype(np.float32)
    return model, dataset_from_arrays({model.inputs[0].name: x}, model.inputs)


def _search_threads(model, data, search: SearchConfig):
    """The report, and torch's thread count at each search and fine-tune step."""
    seen: list[int] = []
    options = PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=search)
    report = prune(model, data, None, options, progress=lambda _: seen.append(torch.get_num_threads())).report
    return report, seen


@pytest.mark.usefixtures("two_threads")
def test_a_search_trains_at_the_count_its_timed_steps_find_faster_and_gives_torchs_back(monkeypatch) -> None:
    """Steps timed slower at 2 threads than at 1 (a busy machine, faked): the search and the fine-tune run at 1, the
    dense teacher is made again at 1, the report says so, and torch has its 2 threads again afterwards."""
    import smart_onnx.prune as prune_module
    import smart_onnx.search.search as search_module

    model, data = _model_and_data()

    def step_seconds(trainer, timed=2):
        trainer.loss({})  # a real step's forward: the teacher is made at the count set
        return {2: 0.8, 1: 0.4}[torch.get_num_threads()]

    monkeypatch.setattr(search_module, "_step_seconds", step_seconds)
    teachers: list[int] = []
    runner = prune_module._dense_runner

    def recorded_runner(m):
        build = runner(m)

        def made(tensors):
            teachers.append(torch.get_num_threads())
            return build(tensors)
        return made

    monkeypatch.setattr(prune_module, "_dense_runner", recorded_runner)
    # Augmented: the teacher answers every batch, so it runs throughout (not from values cached before the plan).
    search = SearchConfig(sparsity=0.5, steps=3, finetune_steps=3, batch_size=8, validation=0.0, augment=True)
    report, seen = _search_threads(model, data, search)
    assert report.steps.threads == 1 and "1 thread of 2" in report.steps.reason
    assert report.to_dict()["steps"]["threads"] == 1
    assert seen and set(seen) == {1}
    assert teachers[:2] == [2, 1]  # made at 2 for the first timed step, then again at 1 for the search
    assert torch.get_num_threads() == 2


@pytest.mark.usefixtures("two_threads")
def test_a_count_the_caller_gives_is_kept_untimed(monkeypatch) -> None:
    import smart_onnx.search.search as search_module

    model, data = _model_and_data()
    timed_at: list[int] = []

    def step_seconds(trainer, timed=2):
        timed_at.append(torch.get_num_threads())
        return 0.01

    monkeypatch.setattr(search_module, "_step_seconds", step_seconds)
    search = SearchConfig(sparsity=0.5, steps=3, finetune_steps=3, batch_size=8, validation=0.0, augment=False,
                          threads=1)
    report, seen = _search_threads(model, data, search)
    assert report.steps.threads is None and "thread" not in report.steps.reason
    assert "threads" not in report.to_dict()["steps"] and report.to_dict()["search"]["threads"] == 1
    assert PruneReport.from_json(report.to_json()).search.threads == 1
    assert set(seen) == {1} and timed_at == [1]  # the plan's one timing, at the caller's count
    assert torch.get_num_threads() == 2
    # No time budget: nothing is timed, torch's count is kept.
    untimed = SearchConfig(sparsity=0.5, steps=3, finetune_steps=3, batch_size=8, validation=0.0, augment=False,
                           time_budget=None)
    report, seen = _search_threads(model, data, untimed)
    assert report.steps.threads is None and set(seen) == {2}
