"""Library metrics of the eval package on hand-made arrays and small models."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.data import load_dataset
from smart_onnx.errors import DataError, GraphError
from smart_onnx.eval import (
    EvalReport,
    OutputMetrics,
    agreement_gate,
    check_same_inputs,
    compare_layers,
    compare_models,
    compare_outputs,
    layer_totals,
    weight_counts,
)
from smart_onnx.model import load_model
from tests.eval.models import write_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("eval"))


def test_identical_outputs() -> None:
    ref = {"y": np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]], np.float32)}
    (m,) = compare_outputs(ref, ref, labels=np.array([1, 2]))
    assert m.cosine == pytest.approx(1.0) and m.relative_error == 0.0
    assert m.top1_agreement == 1.0 and m.accuracy == 0.5 and m.reference_accuracy == 0.5


def test_half_agreement_and_error() -> None:
    ref = {"y": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)}
    cand = {"y": np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)}
    (m,) = compare_outputs(ref, cand, labels=np.array([0, 0]))
    assert m.top1_agreement == 0.5
    assert m.cosine == pytest.approx(0.5)  # <r, c> = 1, |r| |c| = 2
    assert m.relative_error == pytest.approx(1.0)  # |c - r| = sqrt(2) = |r|
    assert (m.accuracy, m.reference_accuracy) == (1.0, 0.5)


@pytest.mark.parametrize("shape", [(4,), (4, 1), (2, 3, 4)])
def test_non_class_outputs_have_no_top1(shape) -> None:
    y = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    (m,) = compare_outputs({"y": y}, {"y": 2 * y})
    assert m.top1_agreement is None and m.accuracy is None
    assert m.cosine == pytest.approx(1.0) and m.relative_error == pytest.approx(1.0)


@pytest.mark.parametrize(("agreement", "minimum", "passed"), [(0.9, 0.9, True), (0.89, 0.9, False), (1.0, 0.0, True)])
def test_gate(agreement, minimum, passed) -> None:
    report = EvalReport(10, [OutputMetrics("y", 1.0, 0.0, top1_agreement=agreement)])
    assert agreement_gate(report, minimum) == (passed, agreement)


def test_gate_without_class_output() -> None:
    with pytest.raises(DataError, match=r"\[N, C\]"):
        agreement_gate(EvalReport(10, [OutputMetrics("y", 1.0, 0.0)]), 0.5)


def test_inputs_must_match(files) -> None:
    check_same_inputs(load_model(files["ref"]), load_model(files["half"]))
    with pytest.raises(GraphError, match="'image'"):
        check_same_inputs(load_model(files["ref"]), load_model(files["renamed"]))


def test_weight_counts_and_layers(files) -> None:
    ref, half = load_model(files["ref"]), load_model(files["half"])
    assert weight_counts(ref) == {"nonzero": 36 + 4 + 320, "total": 36 + 4 + 320 + 5}
    assert weight_counts(half) == {"nonzero": 36 + 4 + 160, "total": 365}
    rows = compare_layers(ref, half, {"x": (1, 1, 6, 6)})
    by = {r["name"]: r for r in rows}
    assert by["conv"]["sparsity"] == 0.0 and by["conv"]["macs_after"] == by["conv"]["macs_before"] == 64 * 9
    # Effective MACs scale with the weight's density: half the Gemm weight is zero.
    assert by["fc"]["sparsity"] == 0.5 and by["fc"]["macs_after"] == by["fc"]["macs_before"] // 2 == 160
    totals = layer_totals(rows)
    assert (totals["params_before"], totals["params_after"]) == (356, 196)


def test_compare_models(files) -> None:
    ref, cand = load_model(files["ref"]), load_model(files["scrambled"])
    data = load_dataset(files["data"], ref.inputs)
    result = compare_models(ref, cand, data, batch_size=16, latency_batch=8, warmup=0, repeats=2, threads=1)
    assert result.eval.samples == 48
    assert result.eval.top1_agreement < 0.5 and result.eval.reference_accuracy is not None
    assert set(result.eval.latency) == {"1", "8"}
    assert result.eval.latency["8"]["candidate"].threads == 1
    d = result.to_dict()
    assert {"eval", "layers", "weights", "totals", "latency_settings", "macs_note"} <= set(d)
    assert compare_models(ref, ref, data, latency_batch=None).eval.latency == {}
