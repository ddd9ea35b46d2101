"""The passes that only accumulate (statistics, the teacher's outputs and variances), data-parallel.

Two gloo ranks (torch.multiprocessing) against one process: each rank runs half the batches
and holds the teacher's outputs of its own samples only, and the results (statistics,
variances, every training step's loss and gradient) are the one process's.
"""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch

from smart_onnx.data import Dataset
from smart_onnx.executor import Executor
from smart_onnx.graph import find_prunable_layers, infer_output_roles
from smart_onnx.graph.features import feature_points
from smart_onnx.model import normalize
from smart_onnx.search import SearchConfig
from smart_onnx.search.distributed import reduce_gradients
from smart_onnx.search.loader import draws, sampler
from smart_onnx.search.stats import activation_stats
from smart_onnx.search.trainer import Trainer
from tests.helpers import count_forwards, run_ranks

SAMPLES, BATCH, STEPS, SEED = 16, 2, 8, 0


def _passes(zm) -> dict:
    """This rank's statistics, teacher values and variances, forward passes, and its first training steps."""
    model = normalize(zm.proto)
    (name, example), = zm.feeds.items()
    x = np.random.default_rng(0).standard_normal((SAMPLES, *example.shape[1:])).astype(np.float32)
    data = Dataset({name: x})
    executor = Executor(model)
    runs = count_forwards(executor)
    stats = activation_stats(executor, data, SearchConfig(batch_size=4, stats_batches=4))
    stats_runs, runs[0] = runs[0], 0
    layers = [lay.name for lay in find_prunable_layers(model)]
    trainer = Trainer(executor, data, batch_size=BATCH, seed=SEED, device="cpu", label_weight=1.0, temperature=4.0,
                      outputs=infer_output_roles(model), label_output=None,
                      features=feature_points(model, layers, 2), feature_weight=1.0)
    result = {"stats": stats, "stats_runs": stats_runs, "teacher_runs": runs[0], "owned": trainer.teacher.owned,
              "variances": trainer.teacher.variances, "cached": trainer.teacher.cached, "steps": []}
    torch.manual_seed(0)
    for _ in range(STEPS):  # the training loss and gradient of whole batches, as Phase.run takes them
        loss = trainer.loss({})
        loss.backward()
        value = reduce_gradients(trainer.weight_params, loss)
        result["steps"].append((value, [p.grad.clone() for p in trainer.weight_params]))
        for p in trainer.weight_params:
            p.grad = None
    return result


def test_two_ranks_share_the_statistics_and_the_teacher_pass(zoo_export, tmp_path) -> None:
    zm = zoo_export("resnet_like", "legacy17")
    one = _passes(zm)
    two = run_ranks(_passes, 2, tmp_path, zm)
    assert one["stats_runs"] == 4 and one["teacher_runs"] == SAMPLES // BATCH
    assert one["owned"] == range(SAMPLES) and one["variances"] and one["cached"]
    for rank, got in enumerate(two):
        assert got["stats_runs"] == 2 and got["teacher_runs"] == SAMPLES // BATCH // 2  # half the work each
        assert got["owned"] == range(rank * SAMPLES // 2, (rank + 1) * SAMPLES // 2)
        assert got["stats"].keys() == one["stats"].keys()
        for layer, value in one["stats"].items():
            torch.testing.assert_close(got["stats"][layer], value, rtol=1e-12, atol=0)
        assert got["variances"].keys() == one["variances"].keys()
        for name, value in one["variances"].items():
            torch.testing.assert_close(got["variances"][name], value, rtol=1e-6, atol=0)
        owned = torch.as_tensor(np.asarray(got["owned"]))
        for name, value in one["cached"].items():  # only its own samples' values, the one process's
            torch.testing.assert_close(got["cached"][name], value.index_select(0, owned), rtol=1e-5, atol=1e-6)
        for (loss, grads), (loss_one, grads_one) in zip(got["steps"], one["steps"], strict=True):
            assert loss == pytest.approx(loss_one, rel=1e-5)  # the whole batch's loss and gradient on every rank
            for g, g_one in zip(grads, grads_one, strict=True):
                torch.testing.assert_close(g, g_one, rtol=1e-4, atol=1e-6)


def test_ranks_train_on_the_batches_of_one_process_each_on_its_own_samples() -> None:
    rng = np.random.default_rng(7)
    expected = [order[s:s + 4] for order in (rng.permutation(10), rng.permutation(10)) for s in (0, 4)]
    assert [b.tolist() for b in islice(sampler(10, 4, 7), 4)] == [e.tolist() for e in expected]
    batches = [np.array([0, 5, 1, 6]), np.array([0, 1, 2, 3])]
    mine = list(draws(iter(batches), False, owned=range(0, 5)))
    assert [d.rows.tolist() for d in mine] == [[0, 2], [0, 1, 2, 3]] and [d.share for d in mine] == [0.5, 1.0]
    theirs = list(draws(iter(batches), False, owned=range(5, 10)))
    assert [d.read.tolist() for d in theirs] == [[5, 6], [0]] and [d.share for d in theirs] == [0.5, 0.0]
    # none of batch 2 is theirs: they run its first row with no weight. The 2-rank test above meets that case:
    steps = list(islice(sampler(SAMPLES, BATCH, SEED), STEPS))
    assert any(len({int(i) < SAMPLES // 2 for i in b}) == 1 for b in steps)
