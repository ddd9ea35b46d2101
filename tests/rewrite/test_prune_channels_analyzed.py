"""Channel mode end to end: groups from ``smart_onnx.graph.analyze``, then the rewrite, then onnxruntime.

The reference is the original model run by the Executor with the removed channels
zeroed in every activation the analysis says carries them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import analyze
from smart_onnx.model import OnnxModel
from smart_onnx.rewrite.prune_channels import apply_channel_masks
from tests.helpers import relative_error, run_ort
from tests.rewrite import masked_executor_outputs, random_feeds, random_keep, typed_model
from tests.rewrite.test_prune_channels import CASES as HAND_BUILT


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 7 * sum(shape)).standard_normal(shape).astype(np.float32)


def _x(c: int = 3, hw: int = 6) -> dict[str, np.ndarray]:
    return {"x": np.zeros((1, c, hw, hw), np.float32)}


def squeeze_excite() -> OnnxModel:
    """conv -> SE gate (pool, two 1x1 convs, sigmoid) -> Mul -> conv."""
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Conv", ["p", "Wr", "Br"], ["q"], name="reduce"),
        helper.make_node("Relu", ["q"], ["q2"], name="relu2"),
        helper.make_node("Conv", ["q2", "We", "Be"], ["e"], name="expand"),
        helper.make_node("Sigmoid", ["e"], ["g"], name="gate"),
        helper.make_node("Mul", ["r", "g"], ["s"], name="scale"),
        helper.make_node("Conv", ["s", "W2"], ["y"], name="c2"),
    ]
    inits = {"W1": _rand(12, 3, 3, 3), "B1": _rand(12), "Wr": _rand(4, 12, 1, 1), "Br": _rand(4),
             "We": _rand(12, 4, 1, 1), "Be": _rand(12), "W2": _rand(5, 12, 1, 1)}
    return typed_model(nodes, _x(), ["y"], inits)


def conv_prelu() -> OnnxModel:
    """conv -> conv -> PRelu (per-channel slopes [C, 1, 1]) -> conv."""
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["a"], name="c1"),
        helper.make_node("Conv", ["a", "Wg", "Bg"], ["b"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["b", "slope"], ["r"], name="prelu"),
        helper.make_node("Conv", ["r", "W2"], ["y"], name="c2"),
    ]
    inits = {"W1": _rand(8, 3, 1, 1), "Wg": _rand(8, 8, 3, 3), "Bg": _rand(8),
             "slope": np.abs(_rand(8, 1, 1)) * 0.1, "W2": _rand(4, 8, 1, 1)}
    return typed_model(nodes, _x(), ["y"], inits)


def gemm_chain() -> OnnxModel:
    """MLP: Gemm (transB=0) -> Relu -> Gemm (transB=1) -> MatMul + Add bias -> Relu -> Gemm."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "B1"], ["a"], name="fc1"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "B2"], ["b"], name="fc2", transB=1),
        helper.make_node("MatMul", ["b", "W3"], ["m"], name="fc3"),
        helper.make_node("Add", ["m", "B3"], ["c"], name="bias3"),
        helper.make_node("Relu", ["c"], ["r3"], name="relu3"),
        helper.make_node("Gemm", ["r3", "W4"], ["y"], name="fc4"),
    ]
    inits = {"W1": _rand(10, 16), "B1": _rand(16), "W2": _rand(12, 16), "B2": _rand(12),
             "W3": _rand(12, 9), "B3": _rand(9), "W4": _rand(9, 3)}
    return typed_model(nodes, {"x": np.zeros((4, 10), np.float32)}, ["y"], inits)


def conv_transpose() -> OnnxModel:
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["a"], name="c1"),
        helper.make_node("ConvTranspose", ["a", "Wt", "Bt"], ["b"], name="up", strides=[2, 2]),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W2"], ["y"], name="c2"),
    ]
    inits = {"W1": _rand(10, 3, 1, 1), "B1": _rand(10), "Wt": _rand(10, 6, 2, 2), "Bt": _rand(6),
             "W2": _rand(2, 6, 1, 1)}
    return typed_model(nodes, _x(), ["y"], inits)


EXTRA: dict[str, Callable[[], OnnxModel]] = {
    f.__name__: f for f in (squeeze_excite, conv_prelu, gemm_chain, conv_transpose)
}
MODELS: dict[str, Callable[[], OnnxModel]] = {
    **{name: (lambda build=build: build()[0]) for name, build in HAND_BUILT.items()}, **EXTRA,
}


def _rewrite_and_compare(model: OnnxModel, removed: float, rtol: float):
    analysis = analyze(model)
    keep = {g.id: random_keep(g.channels, removed, seed=g.id + 11) for g in analysis.prunable_groups}
    out = apply_channel_masks(model, analysis, keep)
    onnx.checker.check_model(out.proto, full_check=True)
    feeds = random_feeds(model, seed=4)
    expected = masked_executor_outputs(model, analysis.groups, keep, feeds, analysis)
    for a, e in zip(run_ort(out.proto, feeds), expected, strict=True):
        assert a.shape == e.shape
        assert relative_error(a, e) <= rtol
    return analysis, keep, out


@pytest.mark.parametrize("removed", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("case", sorted(MODELS))
def test_analyzed_removal_matches_masked_executor(case: str, removed: float) -> None:
    model = MODELS[case]()
    analysis, keep, out = _rewrite_and_compare(model, removed, rtol=1e-4)
    assert analysis.prunable_groups, "every case has something to prune"
    assert out.num_weights() < model.num_weights()
    for group in analysis.prunable_groups:
        for s in group.slices:
            axis_len = out.weight(s.tensor).shape[s.axis]
            assert axis_len < s.axis_size or len(keep[group.id]) == group.channels


@pytest.mark.parametrize("case", sorted(MODELS))
def test_analyzed_keep_all_is_the_original(case: str) -> None:
    model = MODELS[case]()
    _, _, out = _rewrite_and_compare(model, 0.0, rtol=1e-6)
    feeds = random_feeds(model, seed=6)
    for a, e in zip(run_ort(out.proto, feeds), run_ort(model.proto, feeds), strict=True):
        assert np.max(np.abs(a - e)) <= 1e-6


def test_frozen_groups_from_the_analysis_are_refused() -> None:
    model = MODELS["chain_bn"]()
    analysis = analyze(model)
    frozen = analysis.frozen_groups[0]
    before = model.proto.SerializeToString()
    with pytest.raises(ConstraintError, match="frozen"):
        apply_channel_masks(model, analysis, {frozen.id: np.arange(frozen.channels - 1)})
    assert model.proto.SerializeToString() == before
