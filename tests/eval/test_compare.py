"""Library metrics of the eval package on hand-made arrays and small models."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.data import load_dataset
from smart_onnx.errors import DataError, GraphError
from smart_onnx.eval import (
    NO_LATENCY,
    EvalReport,
    LatencySettings,
    OutputComparison,
    OutputMetrics,
    agreement_gate,
    check_same_inputs,
    compare_layers,
    compare_models,
    compare_outputs,
    evaluate,
    judge_fidelity,
    layer_totals,
    weight_counts,
)
from smart_onnx.eval.compare import WeightCounts
from smart_onnx.eval.fidelity import verdict_lines
from smart_onnx.graph import OutputInfo, OutputRole, infer_output_roles, label_output
from smart_onnx.model import load_model
from tests.eval.models import write_files
from tests.helpers import held_batches


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("eval"))


def _class(name: str = "y") -> OutputInfo:
    return OutputInfo(name, OutputRole.CLASS, "test", 2, 1)


def test_identical_outputs() -> None:
    ref = {"y": np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]], np.float32)}
    (m,) = compare_outputs(ref, ref, [_class()], labels=np.array([1, 2]), label_output="y")
    assert m.cosine == pytest.approx(1.0) and m.relative_error == 0.0
    assert m.top1_agreement == 1.0 and m.accuracy == 0.5 and m.reference_accuracy == 0.5
    assert m.fidelity == 1.0


def test_half_agreement_and_error() -> None:
    # Class logits are compared centred per sample (softmax ignores their mean).
    ref = {"y": np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)}
    cand = {"y": np.array([[1.0, -1.0], [1.0, -1.0]], np.float32)}
    (m,) = compare_outputs(ref, cand, [_class()], labels=np.array([0, 0]), label_output="y")
    assert m.top1_agreement == 0.5 == m.fidelity
    assert m.cosine == pytest.approx(0.0)  # per sample: +1 and -1
    assert m.relative_error == pytest.approx(2**0.5)  # |c - r| = 2 sqrt(2), |r| = 2
    assert (m.accuracy, m.reference_accuracy) == (1.0, 0.5)


def test_labels_score_only_the_label_output() -> None:
    ref = {"y": np.eye(2, dtype=np.float32), "z": np.eye(2, dtype=np.float32)}
    ms = compare_outputs(ref, ref, [_class("y"), _class("z")], labels=np.array([0, 1]), label_output="z")
    assert [m.accuracy for m in ms] == [None, 1.0]


@pytest.mark.parametrize("shape", [(4,), (4, 1), (2, 3, 4), (2, 4)])
def test_regression_outputs_have_no_top1(shape) -> None:
    y = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    (m,) = compare_outputs({"y": y}, {"y": 2 * y}, [OutputInfo("y", OutputRole.REGRESSION, "test")],
                           labels=np.zeros(shape[0], np.int64), label_output="y")
    assert m.top1_agreement is None and m.accuracy is None
    assert m.cosine == pytest.approx(1.0) and m.relative_error == pytest.approx(1.0)
    # Twice the values is not faithful: the raw cosine cannot see it, the per-channel one can.
    assert m.fidelity == (pytest.approx(1.0) if len(shape) == 1 else m.channel_cosine) and (len(shape) == 1 or
                                                                                            m.fidelity < 0.9)


def test_channel_cosine_catches_what_the_raw_cosine_forgives() -> None:
    rng = np.random.default_rng(0)
    reg = [OutputInfo("y", OutputRole.REGRESSION, "test")]
    # Boxes in pixels: predicting the average box keeps the raw cosine near 1.
    boxes = np.array([5.0, 3.0, 22.0, 25.0]) + rng.normal(0, 2.0, (200, 4))
    (m,) = compare_outputs({"y": boxes}, {"y": np.broadcast_to(boxes.mean(0), boxes.shape)}, reg)
    assert m.cosine > 0.98 and abs(m.channel_cosine) < 0.05 and m.fidelity == m.channel_cosine
    # A detector's output mixing box rows (~100) with class-score rows (~1e-3): scores scrambled.
    out = np.concatenate([100 + 30 * rng.random((50, 4, 60)), 1e-3 * rng.random((50, 80, 60))], axis=1)
    cand = out.copy()
    cand[:, 4:] = rng.permutation(cand[:, 4:].reshape(-1)).reshape(cand[:, 4:].shape)
    (m,) = compare_outputs({"y": out}, {"y": cand}, reg)
    assert m.cosine > 0.999 and m.channel_cosine < 0.2
    verdict = judge_fidelity([m])
    assert verdict.degraded == ["y"] and "per-channel cosine" in verdict.warnings[0]
    (same,) = compare_outputs({"y": out}, {"y": out.copy()}, reg)
    assert same.channel_cosine == pytest.approx(1.0)


def test_cosine_is_the_mean_over_samples() -> None:
    """One sample's output flipped: mean cosine 0.5 whatever the other sample's magnitude."""
    ref = np.array([[1000.0, 0.0], [0.0, 1.0]], np.float32)
    cand = np.array([[1000.0, 0.0], [0.0, -1.0]], np.float32)
    (m,) = compare_outputs({"y": ref}, {"y": cand}, [OutputInfo("y", OutputRole.REGRESSION, "test")])
    assert m.cosine == pytest.approx(0.0)  # (1 + -1) / 2


@pytest.mark.parametrize("time_major", [False, True])
def test_sequence_step_and_decode_agreement(time_major: bool) -> None:
    # Greedy CTC paths over 6 steps, 3 classes (0 = blank): [1,1,0,2,2,0] -> (1, 2).
    paths_ref = np.array([[1, 1, 0, 2, 2, 0], [2, 0, 2, 1, 1, 1]])
    paths_cand = np.array([[1, 0, 0, 2, 0, 0], [2, 2, 2, 1, 1, 1]])  # decodes (1, 2) = ref; (2, 1) != (2, 2, 1)
    ref, cand = (np.eye(3, dtype=np.float32)[p] * 5 for p in (paths_ref, paths_cand))  # [N, T, C]
    if time_major:
        ref, cand = ref.transpose(1, 0, 2), cand.transpose(1, 0, 2)
    info = OutputInfo("y", OutputRole.SEQUENCE, "test", 3, 2, 1 if time_major else 0)
    (m,) = compare_outputs({"y": ref}, {"y": cand}, [info])
    assert m.top1_agreement == pytest.approx(9 / 12)
    assert m.decode_agreement == 0.5 == m.fidelity


def test_verdict_warns_on_degraded_outputs_and_gates() -> None:
    good = OutputMetrics("cls", "class", 0.999, 0.01, top1_agreement=0.99)
    boxes = OutputMetrics("boxes", "regression", 0.17, 7.2)
    ignored = OutputMetrics("n", "ignore", -1.0, 9.0)
    v = judge_fidelity([good, boxes, ignored])
    assert v.passed and not v.faithful and v.degraded == ["boxes"] and v.worst == "boxes"
    assert "cosine 0.1700 < 0.95" in v.warnings[0]
    assert judge_fidelity([good, boxes], 0.5).passed is False
    strict = judge_fidelity([good], 0.995)
    assert not strict.passed and strict.degraded == ["cls"]
    assert judge_fidelity([good], 0.98).faithful
    lines = verdict_lines(judge_fidelity([good, boxes]))
    assert lines[-1].startswith("result: DEGRADED") and not any("pass" in line for line in lines)


@pytest.mark.parametrize(("agreement", "minimum", "passed"), [(0.9, 0.9, True), (0.89, 0.9, False), (1.0, 0.0, True)])
def test_gate(agreement, minimum, passed) -> None:
    report = EvalReport(10, [OutputMetrics("y", "class", 1.0, 0.0, top1_agreement=agreement)])
    assert agreement_gate(report, minimum) == (passed, agreement)


def test_gate_without_class_output() -> None:
    with pytest.raises(DataError, match="needs a class output"):
        agreement_gate(EvalReport(10, [OutputMetrics("y", "regression", 1.0, 0.0)]), 0.5)


def test_inputs_must_match(files) -> None:
    check_same_inputs(load_model(files["ref"]), load_model(files["half"]))
    with pytest.raises(GraphError, match="'image'"):
        check_same_inputs(load_model(files["ref"]), load_model(files["renamed"]))


def test_weight_counts_and_layers(files) -> None:
    ref, half = load_model(files["ref"]), load_model(files["half"])
    assert weight_counts(ref) == WeightCounts(nonzero=36 + 4 + 320, total=36 + 4 + 320 + 5)
    assert weight_counts(half) == WeightCounts(nonzero=36 + 4 + 160, total=365)
    rows = compare_layers(ref, half, {"x": (1, 1, 6, 6)})
    by = {r.name: r for r in rows}
    assert by["conv"].sparsity == 0.0 and by["conv"].macs_after == by["conv"].macs_before == 64 * 9
    # Effective MACs scale with the weight's density: half the Gemm weight is zero.
    assert by["fc"].sparsity == 0.5 and by["fc"].macs_after == by["fc"].macs_before // 2 == 160
    totals = layer_totals(rows)
    assert (totals.params_before, totals.params_after) == (356, 196)


def test_compare_models(files) -> None:
    ref, cand = load_model(files["ref"]), load_model(files["scrambled"])
    data = load_dataset(files["data"], ref.inputs)
    result = compare_models(ref, cand, data, batch_size=16,
                            latency=LatencySettings((1, 8), threads=1, warmup=0, repeats=2))
    assert result.eval.samples == 48
    assert result.eval.top1_agreement < 0.5 and result.eval.reference_accuracy is not None
    assert set(result.eval.latency) == {"1", "8"}
    assert result.eval.latency["8"]["candidate"].threads == 1
    d = result.to_dict()
    assert {"eval", "layers", "weights", "totals", "latency_settings", "macs_note"} <= set(d)
    assert d["latency_settings"] == {"batches": [1, 8], "warmup": 0, "repeats": 2, "threads": 1}
    assert compare_models(ref, ref, data, latency=NO_LATENCY).eval.latency == {}


def test_compare_models_streams_the_batches_to_the_whole_sets_result(files, monkeypatch) -> None:
    ref, cand = load_model(files["ref"]), load_model(files["scrambled"])
    data = load_dataset(files["data"], ref.inputs)
    roles = infer_output_roles(ref)
    whole = evaluate(ref, cand, [(b.inputs, b.labels) for b in data.batches(8)], outputs=roles,
                     label_output=label_output(roles, None, True))
    held = held_batches(monkeypatch)
    streamed = compare_models(ref, cand, data, batch_size=8, latency=NO_LATENCY).eval
    assert len(held) == 6 and max(held) <= 2  # the batch in hand and the first (kept for latency), never all
    assert streamed.samples == whole.samples == 48
    assert streamed.outputs == whole.outputs


def test_batch_by_batch_equals_the_whole_set() -> None:
    """evaluate() feeds OutputComparison one batch at a time; the metrics must not depend on the split."""
    rng = np.random.default_rng(1)
    outputs = [_class("y"), OutputInfo("boxes", OutputRole.REGRESSION, "test"),
               OutputInfo("seq", OutputRole.SEQUENCE, "test", 3, 2, 0)]
    ref = {"y": rng.normal(size=(10, 5)), "boxes": 100 + rng.normal(size=(10, 4, 3)),
           "seq": rng.normal(size=(10, 6, 4))}
    cand = {k: v + rng.normal(scale=0.5, size=v.shape) for k, v in ref.items()}
    labels = rng.integers(0, 5, 10)
    whole = compare_outputs(ref, cand, outputs, labels, "y")
    comparison = OutputComparison(outputs, "y")
    for part in (slice(0, 3), slice(3, 4), slice(4, 10)):
        comparison.add({k: v[part] for k, v in ref.items()}, {k: v[part] for k, v in cand.items()}, labels[part])
    for a, b in zip(whole, comparison.metrics()):
        for field in ("cosine", "relative_error", "channel_cosine", "top1_agreement", "decode_agreement",
                      "accuracy", "reference_accuracy"):
            expected = getattr(a, field)
            assert getattr(b, field) == (expected if expected is None else pytest.approx(expected, rel=1e-9)), field
    boxes = next(m for m in whole if m.name == "boxes")
    assert 0 < boxes.channel_cosine < boxes.cosine  # the pixel offset cannot hide the noise


def test_channel_cosine_matches_the_direct_formula() -> None:
    rng = np.random.default_rng(2)
    ref = 50 + 3 * rng.normal(size=(20, 4))
    cand = ref + rng.normal(size=ref.shape)
    (m,) = compare_outputs({"y": ref}, {"y": cand}, [OutputInfo("y", OutputRole.REGRESSION, "test")])
    mean, std = ref.mean(0), ref.std(0)
    zr, zc = (ref - mean) / std, (cand - mean) / std
    assert m.channel_cosine == pytest.approx(np.sum(zr * zc) / np.linalg.norm(zr) / np.linalg.norm(zc), rel=1e-9)
