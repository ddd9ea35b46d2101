"""Coupling groups, one small graph per rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smart_onnx.graph import Analysis, CouplingGroup, OffsetMap, RepeatMap, Role, WindowMap, analyze
from tests.graph import GraphBuilder

X = {"x": (1, 3, 8, 8)}


def _analyze(b: GraphBuilder, outputs, inputs=X, **kw) -> Analysis:
    return analyze(b.model(inputs, outputs, **kw), dict(inputs))


def _slice(group: CouplingGroup, tensor: str):
    (s,) = [s for s in group.slices if s.tensor == tensor]
    return s


def _head(b: GraphBuilder, y: str, cin: int) -> str:
    """A last conv, so the channels under test do not reach the graph output."""
    return b.conv(y, cin, 2, name="head")


def test_plain_chain_groups_and_output_freezing():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    z = b.conv(b.op("Relu", [y]), 8, 4, name="c2")
    a = _analyze(b, [z])
    g1, g2 = a.group_of("c1"), a.group_of("c2")
    assert g1.frozen is None and g1.channels == 8 and g1.roots == ("c1",)
    assert g1.layers == ("c1", "c2")
    assert {(s.tensor, s.axis, s.role) for s in g1.slices} == {
        ("c1.w", 0, Role.PRODUCER_WEIGHT), ("c1.b", 0, Role.PRODUCER_BIAS), ("c2.w", 1, Role.CONSUMER_WEIGHT)}
    assert "graph output 'c2_out'" in g2.frozen
    assert g1.params == 8 * (3 + 1 + 4)
    assert g1.macs == a.layer("c1").macs + a.layer("c2").macs


def test_conv_bn_relu_slices_norm_params():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, bias=False, name="c1")
    bn = b.op("BatchNormalization", [y] + [b.const((8,), name=f"bn.{p}") for p in "sbmv"], name="bn")
    g = _analyze(b, [_head(b, b.op("Relu", [bn]), 8)]).group_of("c1")
    norm = sorted(s.tensor for s in g.slices if s.role is Role.NORM_PARAM)
    assert norm == ["bn.b", "bn.m", "bn.s", "bn.v"]
    assert [v.tensor for v in g.values][:2] == [y, bn]


def test_residual_add_merges_groups():
    b = GraphBuilder()
    y = b.op("Relu", [b.conv("x", 3, 8, name="c1")])
    r = b.op("Add", [y, b.conv(y, 8, 8, k=3, name="c2")])
    a = _analyze(b, [_head(b, r, 8)])
    g = a.group_of("c1")
    assert a.group_of("c2") is g
    assert g.roots == ("c1", "c2") and g.channels == 8
    # c2 reads and writes the same channels: its weight loses rows and columns.
    assert sorted((s.axis, s.role) for s in g.slices if s.tensor == "c2.w") == [
        (0, Role.PRODUCER_WEIGHT), (1, Role.CONSUMER_WEIGHT)]
    assert _slice(g, "head.w").axis == 1
    assert len(a.groups) == 2  # c1+c2, head


def test_concat_keeps_groups_and_offsets_the_consumer():
    b = GraphBuilder()
    cat = b.op("Concat", [b.conv("x", 3, 4, name="c1"), b.conv("x", 3, 6, name="c2")], axis=1)
    a = _analyze(b, [_head(b, cat, 10)])
    g1, g2 = a.group_of("c1"), a.group_of("c2")
    assert g1 is not g2
    assert _slice(g1, "head.w").index_map.gather(4, 10).tolist() == [0, 1, 2, 3] + [-1] * 6
    assert _slice(g2, "head.w").index_map == OffsetMap(4)
    assert _slice(g2, "head.w").removed_positions([0, 5]).tolist() == [4, 9]


@pytest.mark.parametrize(("opset", "where"), [(17, (1, None)), (11, (None, "split"))])
def test_split_records_size_edits(opset, where):
    b = GraphBuilder(opset=opset)
    y = b.conv("x", 3, 8, name="c1")
    kw = {"split": [3, 5]} if opset < 13 else {}
    inputs = [y] if opset < 13 else [y, b.ints([3, 5])]
    s0, s1 = b.op("Split", inputs, outputs=2, axis=1, **kw)
    out = b.op("Concat", [b.conv(s0, 3, 2, name="ca"), b.conv(s1, 5, 2, name="cb")], axis=1)
    g = _analyze(b, [out]).group_of("c1")
    assert _slice(g, "ca.w").index_map == WindowMap(0, 3) and _slice(g, "cb.w").index_map == WindowMap(3, 8)
    edits = sorted(g.edits, key=lambda e: e.position)
    assert [(e.input_index, e.attribute) for e in edits] == [where, where]
    assert [e.old_value for e in edits] == [3, 5]
    assert [e.delta([0, 1, 4]) for e in edits] == [2, 1]


def test_slice_on_channel_axis_records_bound_edits():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    s = b.op("Slice", [y, b.ints([2]), b.ints([6]), b.ints([1])])
    g = _analyze(b, [b.op("Concat", [b.conv(s, 4, 3, name="c2"), b.conv(y, 8, 3, name="c3")], axis=1)]).group_of("c1")
    assert _slice(g, "c2.w").index_map == WindowMap(2, 6)
    start, end = sorted(g.edits, key=lambda e: e.input_index)
    assert (start.input_index, start.old_value, end.input_index, end.old_value) == (1, 2, 2, 6)
    assert (start.delta([0, 3]), end.delta([0, 3, 7])) == (1, 2)


def test_depthwise_conv_passes_the_group_through():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    d = b.conv(y, 8, 8, k=3, group=8, name="dw")
    a = _analyze(b, [_head(b, d, 8)])
    g = a.group_of("c1")
    assert a.group_of("dw") is g and g.roots == ("c1",) and "dw" in g.layers
    assert _slice(g, "dw.w").role is Role.DEPTHWISE_WEIGHT and _slice(g, "dw.b").role is Role.DEPTHWISE_BIAS
    (edit,) = g.edits
    assert (edit.node, edit.attribute, edit.old_value, edit.delta([1, 2])) == ("dw", "group", 8, 2)


def test_grouped_conv_freezes_with_reason():
    b = GraphBuilder()
    y = b.conv(b.conv("x", 3, 8, name="c1"), 8, 8, k=3, group=2, name="gc")
    a = _analyze(b, [_head(b, y, 8)])
    assert "group=2" in a.group_of("c1").frozen and "group=2" in a.group_of("gc").frozen


def test_squeeze_excitation_gate():
    b = GraphBuilder()
    trunk = b.op("Relu", [b.conv("x", 3, 8, name="c1")])
    s = b.conv(b.op("GlobalAveragePool", [trunk]), 8, 2, name="se1")
    gate = b.op("Sigmoid", [b.conv(b.op("Relu", [s]), 2, 8, name="se2")])
    a = _analyze(b, [_head(b, b.op("Mul", [trunk, gate]), 8)])
    g = a.group_of("c1")
    assert a.group_of("se2") is g and g.roots == ("c1", "se2")
    assert {s.tensor for s in g.slices if s.role is Role.CONSUMER_WEIGHT} == {"se1.w", "head.w"}
    inner = a.group_of("se1")
    assert inner is not g and inner.channels == 2 and inner.frozen is None
    assert _slice(inner, "se2.w").axis == 1


@pytest.mark.parametrize(("target", "edited"), [([1, 200], True), ([0, -1], False), (None, False)])
def test_flatten_into_gemm_spans_hw_features(target, edited):
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1", strides=[2, 2])  # [1, 8, 5, 5]: 25 features per channel
    flat = b.op("Flatten", [y]) if target is None else b.op("Reshape", [y, b.ints(target)], name="rs")
    out = b.op("Gemm", [flat, b.const((10, 200), name="fc.w")], transB=1)
    a = _analyze(b, [out], inputs={"x": (1, 3, 10, 10)})
    g = a.group_of("c1")
    assert _slice(g, "fc.w").index_map == RepeatMap(25, 25)
    assert _slice(g, "fc.w").removed_positions([1]).tolist() == list(range(25, 50))
    assert len(g.edits) == int(edited)
    if edited:
        assert (g.edits[0].node, g.edits[0].position, g.edits[0].old_value, g.edits[0].delta([0, 7])) == (
            "rs", 1, 200, 50)


def test_nhwc_graph_tracks_the_channel_axis():
    b = GraphBuilder()
    nchw = b.op("Transpose", ["x"], perm=[0, 3, 1, 2])
    y = b.op("Transpose", [b.conv(nchw, 3, 4, name="c1")], perm=[0, 2, 3, 1])  # [1, 5, 5, 4]
    y = b.op("Add", [y, b.const((4,), name="shift")])
    flat = b.op("Reshape", [b.op("Relu", [y]), b.ints([1, -1])])
    out = b.op("MatMul", [flat, b.const((100, 10), name="fc.w")])
    g = _analyze(b, [out], inputs={"x": (1, 5, 5, 3)}).group_of("c1")
    assert _slice(g, "shift").role is Role.AFFINE_CONST  # an offset: masked with its channel
    fc = _slice(g, "fc.w")
    assert fc.axis == 0 and fc.index_map == RepeatMap(25, 1, 4)  # channel c at c, c+4, c+8, ...
    assert g.frozen is None and not g.edits


def test_transformer_ffn_hidden_dimension():
    b = GraphBuilder()
    h = b.op("Add", [b.op("MatMul", ["x", b.const((8, 32), name="w1")], name="fc1"), b.const((32,), name="b1")])
    erf = b.op("Erf", [b.op("Div", [h, b.const((), value=np.float32(1.4142135))])])
    gelu = b.op("Mul", [b.op("Mul", [h, b.op("Add", [erf, b.const((), value=np.float32(1.0))])]),
                        b.const((), value=np.float32(0.5))])
    out = b.op("Add", [b.op("MatMul", [gelu, b.const((32, 8), name="w2")], name="fc2"), b.const((8,), name="b2")])
    a = _analyze(b, [out], inputs={"x": (1, 16, 8)})
    g = a.group_of("fc1")
    assert g.frozen is None and g.channels == 32 and g.layers == ("fc1", "fc2")
    assert {(s.tensor, s.axis) for s in g.slices} == {("w1", 1), ("b1", 0), ("w2", 0)}
    assert g.macs == 16 * 32 * 8 * 2
    assert "graph output" in a.group_of("fc2").frozen


def test_unknown_op_freezes_with_node_and_op_in_the_reason():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    lrn = b.op("LRN", [y], name="norm", size=3)
    g = _analyze(b, [_head(b, lrn, 8)]).group_of("c1")
    assert g.frozen == "node 'norm' (LRN) is not understood by the channel analysis"


@pytest.mark.parametrize(
    ("shape", "sliced"), [((1, 8, 1, 1), True), ((8, 1, 1), True), ((1,), False), ((), False)])
def test_constant_operands_are_sliced_only_with_a_channel_dim(shape, sliced):
    b = GraphBuilder()
    y = b.op("Mul", [b.conv("x", 3, 8, name="c1"), b.const(shape, name="k")])
    g = _analyze(b, [_head(b, y, 8)]).group_of("c1")
    assert any(s.tensor == "k" for s in g.slices) == sliced
    if sliced:
        assert _slice(g, "k").axis == len(shape) - 3


def test_add_with_an_untraced_runtime_tensor_freezes():
    b = GraphBuilder()
    r = b.op("Add", ["x", b.conv("x", 3, 3, name="c1")], name="res")
    g = _analyze(b, [_head(b, r, 3)]).group_of("c1")
    assert g.frozen.startswith("node 'res' (Add) also reads 'x'")


def _shared_weight(b: GraphBuilder, join: str) -> Analysis:
    w = b.const((8, 3, 1, 1), name="shared")
    y1, y2 = b.op("Conv", ["x", w], name="a"), b.op("Conv", ["x", w], name="b")
    joined = b.op(join, [y1, y2], **({"axis": 1} if join == "Concat" else {}))
    return _analyze(b, [_head(b, joined, 16 if join == "Concat" else 8)])


def test_shared_weight_cut_the_same_way_stays_prunable():
    a = _shared_weight(GraphBuilder(), "Add")  # the Add ties a's and b's channels
    g = a.group_of("a")
    assert g is a.group_of("b") and g.frozen is None
    assert {s.node for s in g.slices if s.tensor == "shared"} == {"a", "b"}


def test_shared_weight_cut_differently_freezes():
    a = _shared_weight(GraphBuilder(), "Concat")  # a and b are separate groups
    assert "'shared' is read by nodes that would cut it differently" in a.group_of("a").frozen
    assert a.group_of("b").frozen is not None


def test_constant_also_read_elsewhere_freezes():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    a = _analyze(b, [_head(b, y, 8), b.op("ReduceSum", ["c1.w"], name="peek")])
    assert "'c1.w' is also read by node 'peek' (ReduceSum)" in a.group_of("c1").frozen


def test_to_dict_is_json_ready():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    a = _analyze(b, [_head(b, y, 8)])
    data = json.loads(json.dumps(a.to_dict()))
    assert data["summary"]["groups"] == 2 and data["summary"]["frozen_groups"] == 1
    assert data["groups"][0]["slices"][0]["role"] == "producer_weight"


def test_one_channel_attention_map_broadcasts_without_tying():
    b = GraphBuilder()
    trunk = b.conv("x", 3, 8, name="c1")
    attention = b.op("Sigmoid", [b.conv(trunk, 8, 1, name="att")])  # [1, 1, 8, 8]
    a = _analyze(b, [_head(b, b.op("Mul", [trunk, attention]), 8)])
    g = a.group_of("c1")
    assert g.frozen is None and g.roots == ("c1",)
    assert a.group_of("att").channels == 1


def test_nhwc_resize_follows_the_last_axis():
    b = GraphBuilder()
    y = b.op("Transpose", [b.conv("x", 3, 4, name="c1")], perm=[0, 2, 3, 1])
    scales = b.const((4,), value=np.asarray([1, 2, 2, 1], dtype=np.float32))
    up = b.op("Resize", [y, "", scales], mode="nearest")
    back = b.op("Transpose", [up], perm=[0, 3, 1, 2])
    g = _analyze(b, [_head(b, back, 4)]).group_of("c1")
    assert g.frozen is None and any(s.tensor == "head.w" for s in g.slices)


def _layernorm_model(axis: int):
    b = GraphBuilder()
    h = b.op("MatMul", ["x", b.const((8, 16), name="w1")], name="fc1")  # [1, 4, 16]
    ln = b.op("LayerNormalization", [h, b.const((16,), name="ln.s"), b.const((16,), name="ln.b")], axis=axis)
    if axis != -1:  # normalising the tokens axis too: scale [4, 16]
        b.inits["ln.s"], b.inits["ln.b"] = (np.ones((4, 16), np.float32),) * 2
    return b.model({"x": (1, 4, 8)}, [b.op("MatMul", [ln, b.const((16, 3))], name="fc2")])


def test_layernorm_over_the_channels_takes_its_statistics_over_the_kept_ones():
    g = analyze(_layernorm_model(-1), {"x": (1, 4, 8)}).group_of("fc1")
    assert g.frozen is None
    assert {(s.tensor, s.axis, s.role) for s in g.slices if s.role is Role.AFFINE_CONST} == {
        ("ln.s", 0, Role.AFFINE_CONST), ("ln.b", 0, Role.AFFINE_CONST)}
    assert [(s.tensor, s.axis, s.role, s.axis_size) for s in g.statistics] == [("fc1_out", 2, Role.STATISTICS, 16)]


def test_layernorm_over_the_channels_and_other_axes_freezes():
    g = analyze(_layernorm_model(1), {"x": (1, 4, 8)}).group_of("fc1")
    assert "takes its mean over axes [1, 2]" in g.frozen


def _shape_read(b: GraphBuilder, y: str, gather: list[int]) -> str:
    """A shape vector ``Shape(y)[gather] ++ [-1]``."""
    picked = b.op("Gather", [b.op("Shape", [y]), b.ints(gather)], axis=0)
    return b.op("Concat", [picked, b.ints([-1])], axis=0)


def test_reshape_target_read_from_the_same_channels_follows_pruning():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    flat = b.op("Reshape", [y, _shape_read(b, y, [0, 1])])  # y.flatten(2): [1, 8, 64]
    out = b.op("MatMul", [b.op("Transpose", [flat], perm=[0, 2, 1]), b.const((8, 4), name="fc.w")])
    g = _analyze(b, [out]).group_of("c1")
    assert g.frozen is None and not g.edits
    assert _slice(g, "fc.w").axis == 0


def test_channel_count_used_for_another_tensor_freezes():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    other = b.conv("x", 3, 8, name="c2")
    reshaped = b.op("Reshape", [other, _shape_read(b, y, [0, 1])], name="rs")
    a = _analyze(b, [_head(b, reshaped, 8), _head(b, y, 8)])
    assert "node 'rs' (Reshape) takes a shape entry from the channel count" in a.group_of("c1").frozen


def test_channel_count_in_arithmetic_freezes():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    half = b.op("Div", [b.op("Gather", [b.op("Shape", [y]), b.ints([1])], axis=0), b.ints([2])], name="half")
    a = _analyze(b, [_head(b, y, 8), half])
    assert a.group_of("c1").frozen.startswith("node 'half' (Div) computes with a channel count")


def test_shape_of_batch_and_spatial_dims_is_harmless():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    dims = b.op("Shape", [y], start=2)
    a = _analyze(b, [_head(b, y, 8), b.op("Cast", [dims], to=1)])
    assert a.group_of("c1").frozen is None


def test_malformed_node_freezes_instead_of_raising():
    b = GraphBuilder()
    y = b.op("Transpose", [b.conv("x", 3, 8, name="c1")], perm=[0, 2, 3], name="bad")  # perm too short
    g = _analyze(b, [y]).group_of("c1")
    assert g.frozen.startswith("node 'bad' (Transpose) has inputs or attributes the channel analysis cannot read")
