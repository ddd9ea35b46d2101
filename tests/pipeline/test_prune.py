"""The prune pipeline end to end on a small generated model, every mode and method."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig

FAST = SearchConfig(steps=6, finetune_steps=3, batch_size=8)


@pytest.fixture(scope="module")
def model_and_data():
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, *example.shape[1:])).astype(np.float32)
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs, labels=labels)
    calib, hold = data.split(0.25, seed=0)
    return model, calib, hold


def _run(model_and_data, *, sparsity, **kw):
    model, calib, hold = model_and_data
    search = replace(kw.pop("search", FAST), sparsity=sparsity)
    return prune(model, calib, hold, PruneOptions(search=search, **kw))


@pytest.mark.parametrize("mode,extra", [("block", {"block": (4, 4, 1, 1)}), ("channel", {}), ("nm", {})])
@pytest.mark.parametrize("method", ["smart", "magnitude", "uniform", "random"])
def test_every_mode_and_method_meets_the_budget(model_and_data, mode, extra, method) -> None:
    sparsity = None if mode == "nm" else 0.5
    out = _run(model_and_data, mode=mode, sparsity=sparsity,
               search=SearchConfig(**{**FAST.__dict__, "method": method}), latency=False, **extra)
    r = out.report
    achieved = r.sparsity.achieved_params  # of all prunable weights, as the request
    # N:M: the pattern's share of all prunable weights (the first conv's 3 input channels leave it dense).
    requested = r.sparsity.requested if mode == "nm" else 0.5
    assert mode != "nm" or (0.45 < requested < 0.5 and r.sparsity.searched == 0.5)
    assert achieved >= requested - 1e-9
    assert achieved <= requested + (0.06 if mode == "channel" else 0.02)  # one unit's cost (a channel is coarse)
    assert r.export_relative_error <= 1e-4
    assert r.eval.samples == len(model_and_data[2])
    assert r.totals.params_after < r.totals.params_before
    if mode == "channel":
        assert out.model.num_weights() < model_and_data[0].num_weights()


def test_same_seed_same_mask_and_report(model_and_data) -> None:
    a = _run(model_and_data, mode="block", sparsity=0.4, block=(4, 4, 1, 1), latency=False)
    b = _run(model_and_data, mode="block", sparsity=0.4, block=(4, 4, 1, 1), latency=False)
    wa = {t.name: t.raw_data for t in a.model.graph.initializer}
    wb = {t.name: t.raw_data for t in b.model.graph.initializer}
    assert wa == wb
    assert a.report.history.loss == b.report.history.loss


def test_macs_budget_counts_macs(model_and_data) -> None:
    r = _run(model_and_data, mode="block", sparsity=0.5, block=(4, 4, 1, 1),
             search=SearchConfig(**{**FAST.__dict__, "budget": "macs"}), latency=False).report
    assert abs(r.sparsity.achieved_macs - 0.5) < 0.03


def test_zero_sparsity_changes_no_weight_shape(model_and_data) -> None:
    out = _run(model_and_data, mode="channel", sparsity=0.0, latency=False)
    assert out.report.sparsity.achieved_params == 0.0
    assert all(row.shape_before == row.shape_after for row in out.report.layers)


@pytest.mark.parametrize("kw,match", [
    ({"mode": "block", "sparsity": 1.0}, "sparsity"),
    ({"mode": "block", "sparsity": -0.1}, "sparsity"),
    ({"mode": "block", "sparsity": None}, "required"),
    ({"mode": "nm", "sparsity": 0.3}, "contradicts"),
    ({"mode": "diagonal", "sparsity": 0.5}, "unknown mode"),
])
def test_impossible_requests_are_refused(model_and_data, kw, match) -> None:
    with pytest.raises(ConstraintError, match=match):
        _run(model_and_data, latency=False, **kw)


def test_one_onnxruntime_session_per_model(model_and_data, monkeypatch) -> None:
    import smart_onnx.eval.ort as ort_mod
    import smart_onnx.prune as prune_mod

    built, outputs = [], []

    def counting(model, **kw):
        built.append(model)
        proto = model.proto if hasattr(model, "proto") else model
        outputs.append([o.name for o in proto.graph.output])  # as the session sees them
        return make_session(model, **kw)

    make_session = ort_mod.make_session
    monkeypatch.setattr(ort_mod, "make_session", counting)
    monkeypatch.setattr(prune_mod, "make_session", counting)
    outcome = _run(model_and_data, mode="block", sparsity=0.5, block=(4, 4, 1, 1))
    r = outcome.report
    # The search's teacher runs the dense model with its feature tensors as extra outputs while it trains, once for
    # the search and again for the fine-tune (the refit between them runs a torch copy: one dense copy at a time);
    # the pruned model's session checks the export and is evaluated; the masked original's gives the export check
    # its reference; the dense reference's is evaluated.
    assert r.training.features and r.training.refit is not None
    teacher = [names for names in outputs if names[-len(r.training.features):] == r.training.features]
    assert len(teacher) == 2 and outputs[:2] == teacher
    rest = built[2:]
    assert len(rest) == 3 and sum(m is outcome.model for m in rest) == 1
    assert all(names == outputs[-1] for names in outputs[2:])  # the teacher's outputs were taken off again
    assert r.eval.samples == len(model_and_data[2]) and r.export_relative_error <= 1e-4


def test_report_records_curves_and_stages(model_and_data) -> None:
    r = _run(model_and_data, mode="block", sparsity=0.5, block=(4, 4, 1, 1)).report
    assert len(r.history.loss) == FAST.steps and len(r.history.tau) == FAST.steps
    assert r.history.tau[0] > r.history.tau[-1]
    assert len(r.history.finetune_loss) == FAST.finetune_steps
    assert {"analysis", "search", "finetune", "export", "eval"} <= set(r.seconds.to_dict())
    assert set(r.eval.latency) == {"1", "8"}


# CI has no GPU; on a machine with one this proves the search, masks and statistics stay on the device.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode,extra", [("block", {"block": (4, 4, 1, 1)}), ("channel", {}), ("nm", {})])
def test_prune_on_cuda(model_and_data, mode, extra) -> None:
    sparsity = None if mode == "nm" else 0.5
    out = _run(model_and_data, mode=mode, sparsity=sparsity, search=replace(FAST, device="cuda"),
               latency=False, **extra)
    assert out.report.sparsity.achieved_params >= 0.5 - 1e-9
    assert out.report.export_relative_error <= 1e-4
