"""Channel mode on hand-built coupling groups (the analysis's record types, written out by hand).

Each case is a small model plus the groups the analysis should find for it. The
rewritten model, run in onnxruntime, must equal the ORIGINAL model run by the
Executor with the removed channels zeroed wherever they flow (``transforms``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.graph.groups import CouplingGroup, Role, ShapeEdit, TensorSlice
from smart_onnx.graph.index_map import IdentityMap, IndexMap, OffsetMap, RepeatMap, WindowMap
from smart_onnx.model import OnnxModel
from smart_onnx.rewrite.prune_channels import apply_channel_masks, plan_channel_removal
from tests.helpers import relative_error, run_ort
from tests.rewrite import masked_executor_outputs, random_feeds, random_keep, typed_model

ID = IdentityMap()


def _w(tensor: str, size: int, axis: int = 0, imap: IndexMap = ID, role: Role = Role.PRODUCER_WEIGHT) -> TensorSlice:
    return TensorSlice(tensor, axis, size, imap, role, node="n")


def _v(value: str, size: int, imap: IndexMap = ID) -> TensorSlice:
    return TensorSlice(value, 1, size, imap, Role.ACTIVATION, node="n")


def _edit(node: str, op: str, where: int | str, position: int, old: int, imap: IndexMap = ID, per: int = 1):
    index, attribute = (where, None) if isinstance(where, int) else (None, where)
    return ShapeEdit(node, op, index, attribute, position, old, per, imap)


def _group(gid: int, channels: int, slices, values=(), edits=(), frozen: str | None = None) -> CouplingGroup:
    return CouplingGroup(gid, channels, ("root",), (), tuple(slices), tuple(values), tuple(edits),
                         (1,) * channels, (1,) * channels, frozen)


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def _x(c: int = 3, hw: int = 6) -> dict[str, np.ndarray]:
    return {"x": np.zeros((1, c, hw, hw), np.float32)}


def _conv(name: str, x: str, w: str, y: str, b: str | None = None, **attrs) -> onnx.NodeProto:
    return helper.make_node("Conv", [x, w] + ([b] if b else []), [y], name=name, **attrs)


def chain_bn():
    nodes = [
        _conv("c1", "x", "W1", "a", "B1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        _conv("c2", "r", "W2", "y", "B2"),
    ]
    var = np.abs(_rand(16)) + 0.5
    inits = {"W1": _rand(16, 3, 3, 3), "B1": _rand(16), "s": _rand(16), "b": _rand(16), "m": _rand(16), "v": var,
             "W2": _rand(8, 16, 3, 3), "B2": _rand(8)}
    g0 = _group(0, 16, [_w("W1", 16), _w("B1", 16), *[_w(t, 16, role=Role.NORM_PARAM) for t in "sbmv"],
                        _w("W2", 16, axis=1, role=Role.CONSUMER_WEIGHT)], [_v("a", 16), _v("n", 16), _v("r", 16)])
    g1 = _group(1, 8, [_w("W2", 8), _w("B2", 8)], frozen="node 'c2' (Conv) writes graph output 'y'")
    return typed_model(nodes, _x(), ["y"], inits), [g0, g1]


def depthwise():
    nodes = [
        _conv("c1", "x", "W1", "a"),
        _conv("dw", "a", "Wd", "d", "Bd", group=12, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        _conv("c2", "r", "W2", "y"),
    ]
    inits = {"W1": _rand(12, 3, 1, 1), "Wd": _rand(12, 1, 3, 3), "Bd": _rand(12), "W2": _rand(6, 12, 1, 1)}
    g0 = _group(0, 12, [_w("W1", 12), _w("Wd", 12, role=Role.DEPTHWISE_WEIGHT), _w("Bd", 12, role=Role.DEPTHWISE_BIAS),
                        _w("W2", 12, axis=1, role=Role.CONSUMER_WEIGHT)],
                [_v("a", 12), _v("d", 12), _v("r", 12)], [_edit("dw", "Conv", "group", 0, 12)])
    return typed_model(nodes, _x(), ["y"], inits), [g0]


def concat():
    nodes = [
        _conv("ca", "x", "Wa", "a"),
        _conv("cb", "x", "Wb", "b"),
        helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1),
        _conv("cc", "c", "Wc", "y"),
    ]
    inits = {"Wa": _rand(8, 3, 1, 1), "Wb": _rand(6, 3, 1, 1), "Wc": _rand(5, 14, 1, 1)}
    consumer = Role.CONSUMER_WEIGHT
    g0 = _group(0, 8, [_w("Wa", 8), _w("Wc", 14, 1, ID, consumer)], [_v("a", 8), _v("c", 14)])
    g1 = _group(1, 6, [_w("Wb", 6), _w("Wc", 14, 1, OffsetMap(8), consumer)], [_v("b", 6), _v("c", 14, OffsetMap(8))])
    return typed_model(nodes, _x(), ["y"], inits), [g0, g1]


def _split_case(opset: int, split_nodes: list[onnx.NodeProto], sizes: tuple[int, int], where: int | str,
                inits: dict[str, np.ndarray]):
    first, second = WindowMap(0, sizes[0]), WindowMap(sizes[0], sum(sizes))
    nodes = [
        _conv("c1", "x", "W1", "a"), *split_nodes,
        _conv("c2", "s0", "W2", "p"), _conv("c3", "s1", "W3", "q"),
        helper.make_node("Add", ["p", "q"], ["y"], name="add"),
    ]
    inits = {**inits, "W1": _rand(16, 3, 1, 1), "W2": _rand(4, sizes[0], 1, 1), "W3": _rand(4, sizes[1], 1, 1)}
    consumer = Role.CONSUMER_WEIGHT
    edits = [_edit("split", "Split", where, 0, sizes[0], first), _edit("split", "Split", where, 1, sizes[1], second)]
    g0 = _group(0, 16, [_w("W1", 16), _w("W2", sizes[0], 1, first, consumer), _w("W3", sizes[1], 1, second, consumer)],
                [_v("a", 16), _v("s0", sizes[0], first), _v("s1", sizes[1], second)], edits)
    return typed_model(nodes, _x(), ["y"], inits, opset=opset), [g0]


def split_sizes_input():
    node = helper.make_node("Split", ["a", "sizes"], ["s0", "s1"], name="split", axis=1)
    return _split_case(13, [node], (10, 6), 1, {"sizes": np.array([10, 6], np.int64)})


def split_num_outputs():
    node = helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=1, num_outputs=2)
    return _split_case(18, [node], (8, 8), 1, {})


def split_attribute():
    node = helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=1, split=[10, 6])
    return _split_case(11, [node], (10, 6), "split", {})


def split_equal_attribute():
    node = helper.make_node("Split", ["a"], ["s0", "s1"], name="split", axis=1)
    return _split_case(11, [node], (8, 8), "split", {})


def slice_window():
    nodes = [
        _conv("c1", "x", "W1", "a"),
        helper.make_node("Slice", ["a", "starts", "ends", "axes"], ["s"], name="slice"),
        _conv("c2", "s", "W2", "y"),
    ]
    inits = {"W1": _rand(16, 3, 1, 1), "W2": _rand(4, 12, 1, 1), "starts": np.array([4], np.int64),
             "ends": np.array([16], np.int64), "axes": np.array([1], np.int64)}
    window = WindowMap(4, 16)
    edits = [_edit("slice", "Slice", 1, 0, 4, WindowMap(0, 4)), _edit("slice", "Slice", 2, 0, 16, WindowMap(0, 16))]
    g0 = _group(0, 16, [_w("W1", 16), _w("W2", 12, 1, window, Role.CONSUMER_WEIGHT)],
                [_v("a", 16), _v("s", 12, window)], edits)
    return typed_model(nodes, _x(), ["y"], inits), [g0]


def _flatten_case(flatten: list[onnx.NodeProto], head: onnx.NodeProto, head_w: str, head_axis: int,
                  inits: dict[str, np.ndarray], edits=(), extra_inputs=None, outputs=("y",)):
    nodes = [_conv("c1", "x", "W1", "a", "B1", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["a"], ["r"], name="relu"),
             *flatten, head]
    spread = RepeatMap(count=16, scale=16)
    inits = {**inits, "W1": _rand(6, 3, 3, 3), "B1": _rand(6)}
    g0 = _group(0, 6, [_w("W1", 6), _w("B1", 6, role=Role.PRODUCER_BIAS),
                       _w(head_w, 96, head_axis, spread, Role.CONSUMER_WEIGHT)],
                [_v("a", 6), _v("r", 6), _v("f", 96, spread)], edits)
    return typed_model(nodes, {**_x(hw=4), **(extra_inputs or {})}, list(outputs), inits), [g0]


def flatten_gemm():
    return _flatten_case([helper.make_node("Flatten", ["r"], ["f"], name="flat")],
                         helper.make_node("Gemm", ["f", "Wg", "Bg"], ["y"], name="fc", transB=1), "Wg", 1,
                         {"Wg": _rand(5, 96), "Bg": _rand(5)})


def reshape_matmul_shared_shape():
    """The Reshape target is shared with a Reshape the group does not touch: that one must keep it."""
    flatten = [helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),
               helper.make_node("Reshape", ["z", "shape"], ["z2"], name="reshape_z")]
    return _flatten_case(flatten, helper.make_node("MatMul", ["f", "Wm"], ["y"], name="fc"), "Wm", 0,
                         {"Wm": _rand(96, 5), "shape": np.array([1, 96], np.int64)},
                         edits=[_edit("reshape", "Reshape", 1, 1, 96, ID, per=16)],
                         extra_inputs={"z": np.zeros((2, 48), np.float32)}, outputs=("y", "z2"))


def residual():
    nodes = [
        _conv("c1", "x", "W1", "a", "B1"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        _conv("c2", "r", "W2", "b", "B2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r", "b"], ["s"], name="add"),
        _conv("c3", "s", "W3", "y"),
    ]
    inits = {"W1": _rand(8, 3, 1, 1), "B1": _rand(8), "W2": _rand(8, 8, 3, 3), "B2": _rand(8), "W3": _rand(4, 8, 1, 1)}
    consumer = Role.CONSUMER_WEIGHT
    g0 = _group(0, 8, [_w("W1", 8), _w("B1", 8), _w("W2", 8, 1, ID, consumer), _w("W2", 8), _w("B2", 8),
                       _w("W3", 8, 1, ID, consumer)], [_v("a", 8), _v("r", 8), _v("b", 8), _v("s", 8)])
    return typed_model(nodes, _x(), ["y"], inits), [g0]


CASES: dict[str, Callable[[], tuple[OnnxModel, list[CouplingGroup]]]] = {
    f.__name__: f for f in (chain_bn, depthwise, concat, split_sizes_input, split_num_outputs, split_attribute,
                            split_equal_attribute, slice_window, flatten_gemm, reshape_matmul_shared_shape, residual)
}


def _check(model: OnnxModel, groups: list[CouplingGroup], keep: dict[int, np.ndarray], rtol: float) -> OnnxModel:
    out = apply_channel_masks(model, groups, keep)
    onnx.checker.check_model(out.proto, full_check=True)
    feeds = random_feeds(model, seed=3)
    expected = masked_executor_outputs(model, groups, keep, feeds)
    actual = run_ort(out.proto, feeds)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        assert relative_error(a, e) <= rtol
    return out


@pytest.mark.parametrize("removed", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("case", sorted(CASES))
def test_removal_matches_masked_executor(case: str, removed: float) -> None:
    model, groups = CASES[case]()
    keep = {g.id: random_keep(g.channels, removed, seed=g.id + int(removed * 100)) for g in groups if not g.frozen}
    out = _check(model, groups, keep, rtol=1e-4)
    assert [n.name for n in out.graph.node] == [n.name for n in model.graph.node]
    assert out.num_weights() < model.num_weights()
    for g in groups:
        if g.id in keep:
            producer = g.slices[0]
            assert out.weight(producer.tensor).shape[producer.axis] == len(keep[g.id])


@pytest.mark.parametrize("case", sorted(CASES))
def test_keeping_everything_is_the_original(case: str) -> None:
    model, groups = CASES[case]()
    keep = {g.id: np.arange(g.channels) for g in groups}
    out = _check(model, groups, keep, rtol=1e-6)
    feeds = random_feeds(model, seed=5)
    for a, e in zip(run_ort(out.proto, feeds), run_ort(model.proto, feeds), strict=True):
        assert np.max(np.abs(a - e)) <= 1e-6
    assert out is not model and out.num_weights() == model.num_weights()


def test_shared_shape_constant_is_copied_not_edited() -> None:
    model, groups = reshape_matmul_shared_shape()
    out = apply_channel_masks(model, groups, {0: np.array([0, 2, 5])})
    reshapes = {n.name: n for n in out.graph.node if n.op_type == "Reshape"}
    assert reshapes["reshape_z"].input[1] == "shape"
    assert out.weight("shape").tolist() == [1, 96]
    assert out.weight(reshapes["reshape"].input[1]).tolist() == [1, 48]


def test_split_without_sizes_gets_explicit_sizes() -> None:
    model, groups = split_num_outputs()
    out = apply_channel_masks(model, groups, {0: np.array([0, 1, 9, 12, 15])})
    split = next(n for n in out.graph.node if n.op_type == "Split")
    assert out.weight(split.input[1]).tolist() == [2, 3]
    assert not any(a.name == "num_outputs" for a in split.attribute)


def test_depthwise_group_attribute_follows() -> None:
    model, groups = depthwise()
    out = apply_channel_masks(model, groups, {0: np.arange(0, 12, 3)})
    dw = next(n for n in out.graph.node if n.name == "dw")
    assert helper.get_attribute_value(next(a for a in dw.attribute if a.name == "group")) == 4


def test_stale_value_info_is_dropped_and_valid_kept() -> None:
    model, groups = chain_bn()
    model.graph.value_info.extend([
        helper.make_tensor_value_info("r", onnx.TensorProto.FLOAT, [1, 16, 6, 6]),
        helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, None),
        helper.make_tensor_value_info("n", onnx.TensorProto.FLOAT, ["batch", "c", 6, 6]),
        helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, [16]),
    ])
    out = apply_channel_masks(model, groups, {0: np.arange(8)})
    assert [v.name for v in out.graph.value_info] == ["a", "n"]


@pytest.mark.parametrize(
    ("keep", "match"),
    [
        ({0: np.array([], np.int64)}, "would keep no channel"),
        ({0: np.array([0, 16])}, "out of range"),
        ({0: np.array([-1, 3])}, "out of range"),
        ({1: np.array([0, 1])}, "frozen"),
        ({7: np.array([0])}, "names coupling group 7"),
    ],
)
def test_refusals_raise_and_write_nothing(keep: dict[int, np.ndarray], match: str) -> None:
    model, groups = chain_bn()
    before = model.proto.SerializeToString()
    with pytest.raises(ConstraintError, match=match):
        apply_channel_masks(model, groups, keep)
    assert model.proto.SerializeToString() == before


def test_emptying_a_split_output_is_refused() -> None:
    model, groups = split_sizes_input()
    with pytest.raises(ConstraintError, match="entry 1 of input 1 of node 'split'"):
        apply_channel_masks(model, groups, {0: np.arange(10)})


def test_frozen_group_keeping_everything_is_fine() -> None:
    model, groups = chain_bn()
    out = apply_channel_masks(model, groups, {0: np.arange(4), 1: np.arange(8)})
    assert out.weight("W2").shape == (8, 4, 3, 3)


def test_analysis_that_does_not_fit_the_model_is_a_rewrite_error() -> None:
    model, groups = chain_bn()
    wrong = _group(0, 16, [_w("missing", 16)])
    with pytest.raises(RewriteError, match="'missing'"):
        apply_channel_masks(model, [wrong], {0: np.arange(4)})
    dw_model, _ = depthwise()
    stale = _group(0, 12, [_w("W1", 12)], edits=[_edit("dw", "Conv", "group", 0, 50)])
    with pytest.raises(RewriteError, match="expected 50"):
        apply_channel_masks(dw_model, [stale], {0: np.arange(4)})


def test_plan_unites_positions_of_groups_on_one_axis() -> None:
    _, groups = concat()
    plan = plan_channel_removal(groups, {0: np.array([0, 1, 2, 3]), 1: np.array([1, 2, 3, 4, 5])})
    assert plan.removals[("Wc", 1)].tolist() == [4, 5, 6, 7, 8]
    assert plan.removals[("Wa", 0)].tolist() == [4, 5, 6, 7]
    assert plan.removals[("Wb", 0)].tolist() == [0]
