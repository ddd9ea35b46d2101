"""The records are complete: removing a group's channels by following them literally gives
the same outputs (onnxruntime) as the original model with those channels masked at their consumers."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from smart_onnx.graph import CouplingGroup, Role, analyze
from smart_onnx.model import OnnxModel
from tests.graph import GraphBuilder
from tests.helpers import relative_error, run_ort


def _replace(graph: onnx.GraphProto, name: str, array: np.ndarray) -> None:
    for i, t in enumerate(graph.initializer):
        if t.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def _array(graph: onnx.GraphProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in graph.initializer if t.name == name).copy()


def remove_channels(model: OnnxModel, group: CouplingGroup, removed) -> onnx.ModelProto:
    """What a channel rewriter does, written as plainly as possible from the group's records."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    g = proto.graph
    del g.value_info[:]  # stale shapes: onnxruntime would trust them
    drop: dict[tuple[str, int], np.ndarray] = {}
    for s in group.slices:  # several slices may cut one axis (shared constants): union their positions
        key = (s.tensor, s.axis)
        drop[key] = np.union1d(drop.get(key, np.empty(0, np.int64)), s.removed_positions(removed))
    for (tensor, axis), positions in drop.items():
        _replace(g, tensor, np.delete(_array(g, tensor), positions.astype(np.int64), axis=axis))
    deltas: dict[tuple, int] = defaultdict(int)
    for e in group.edits:
        deltas[(e.node, e.input_index, e.attribute, e.position)] += e.delta(removed)
    nodes = {n.name: n for n in g.node}
    for (node_name, index, attribute, position), delta in deltas.items():
        node = nodes[node_name]
        if index is not None:
            values = _array(g, node.input[index])
            values[position] -= delta
            own = f"{node.input[index]}__{node_name}"  # the constant may be shared: edit a copy
            g.initializer.append(numpy_helper.from_array(values, own))
            node.input[index] = own
        else:
            a = next(a for a in node.attribute if a.name == attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i -= delta
            else:
                a.ints[position] -= delta
    return proto


def mask_channels(model: OnnxModel, group: CouplingGroup, removed) -> onnx.ModelProto:
    """The original model with the removed channels zeroed where consumers read them."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    for s in group.slices:
        if s.role is Role.CONSUMER_WEIGHT:
            w = _array(proto.graph, s.tensor)
            index = [slice(None)] * w.ndim
            index[s.axis] = s.removed_positions(removed)
            w[tuple(index)] = 0
            _replace(proto.graph, s.tensor, w)
    return proto


def assert_removal_matches_mask(model: OnnxModel, group: CouplingGroup, feeds, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    removed = rng.choice(group.channels, size=max(1, group.channels // 2), replace=False)
    expected = run_ort(mask_channels(model, group, removed), feeds)
    actual = run_ort(remove_channels(model, group, removed), feeds)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        assert relative_error(a, e) < 1e-4


def _residual_concat_split(b: GraphBuilder) -> str:
    y = b.op("Relu", [b.conv("x", 3, 8, name="c1")])
    lo, hi = b.op("Split", [y, b.ints([3, 5])], outputs=2, axis=1)
    res = b.op("Add", [hi, b.conv(hi, 5, 5, k=3, name="c2")])
    cat = b.op("Concat", [lo, res, b.conv(y, 8, 4, name="c3")], axis=1)
    return b.conv(cat, 12, 2, name="head")


def _se_depthwise(b: GraphBuilder) -> str:
    y = b.op("HardSwish", [b.conv("x", 3, 8, name="c1")])
    d = b.conv(y, 8, 8, k=3, group=8, name="dw")
    s = b.conv(b.op("GlobalAveragePool", [d]), 8, 4, name="se1")
    gate = b.op("HardSigmoid", [b.conv(b.op("Relu", [s]), 4, 8, name="se2")])
    m = b.op("Mul", [d, gate])
    m = b.op("Add", [m, b.const((1, 8, 1, 1))])
    return b.conv(m, 8, 2, name="head")


def _slice_flatten_gemm(b: GraphBuilder) -> str:
    y = b.conv("x", 3, 8, name="c1")
    s = b.op("Slice", [y, b.ints([1]), b.ints([7]), b.ints([1])])
    pooled = b.op("MaxPool", [b.conv(s, 6, 5, name="c2")], kernel_shape=[2, 2], strides=[2, 2])
    flat = b.op("Reshape", [pooled, b.ints([1, 80])])
    return b.op("Gemm", [flat, b.const((3, 80)), b.const((3,))], transB=1)


def _ffn(b: GraphBuilder) -> str:
    flat = b.op("Transpose", [b.op("Reshape", ["x", b.ints([1, 3, 64])])], perm=[0, 2, 1])  # [1, 64, 3]
    h = b.op("Add", [b.op("MatMul", [flat, b.const((3, 16))], name="fc1"), b.const((16,))])
    act = b.op("Gelu", [h]) if b.opset >= 20 else b.op("Tanh", [h])
    return b.op("MatMul", [act, b.const((16, 3))], name="fc2")


def _decoder(b: GraphBuilder) -> str:
    y = b.op("Relu", [b.conv("x", 3, 8, name="c1")])
    up = b.op("ConvTranspose", [y, b.const((8, 6, 2, 2)), b.const((6,))], name="up", strides=[2, 2])
    up = b.op("Resize", [up, "", b.const((4,), value=np.asarray([1, 1, 0.5, 0.5], dtype=np.float32))])
    padded = b.op("Pad", [up, b.ints([0, 0, 1, 1, 0, 0, 1, 1])])
    return b.conv(b.op("AveragePool", [padded], kernel_shape=[2, 2]), 6, 2, name="head")


def _shared_bn_params(b: GraphBuilder) -> str:
    """torch de-duplicates equal parameters behind Identity nodes; both readers cut them alike here."""
    params = [b.const((8,), value=np.full(8, v, dtype=np.float32)) for v in (1.0, 0.0, 0.0, 1.0)]
    again = [b.op("Identity", [p]) for p in params]
    y1 = b.op("BatchNormalization", [b.conv("x", 3, 8, name="c1"), *params])
    y2 = b.op("BatchNormalization", [b.conv("x", 3, 8, name="c2"), *again])
    return b.conv(b.op("Add", [y1, y2]), 8, 2, name="head")


def _hwio_weights(b: GraphBuilder) -> str:
    """TF-style: conv weights stored HWIO and transposed to OIHW in the graph."""
    w1 = b.op("Transpose", [b.const((3, 3, 3, 8), name="w1_hwio")], perm=[3, 2, 0, 1])
    y = b.op("Relu", [b.op("Conv", ["x", w1], name="c1", pads=[1, 1, 1, 1])])
    w2 = b.op("Transpose", [b.const((1, 1, 8, 4), name="w2_hwio")], perm=[3, 2, 0, 1])
    return b.conv(b.op("Conv", [y, w2], name="c2"), 4, 2, name="head")


def _pooled_heads(b: GraphBuilder) -> str:
    """Classifier heads: ReduceMean without keepdims into Gemm, GlobalAveragePool + Squeeze into MatMul."""
    y = b.op("PRelu", [b.conv("x", 3, 8, name="c1"), b.const((8, 1, 1))])
    mean = b.op("ReduceMean", [y, b.ints([2, 3])], keepdims=0)  # opset 18 takes axes as an input
    squeezed = b.op("Squeeze", [b.op("GlobalAveragePool", [y]), b.ints([2, 3])])
    head1 = b.op("Gemm", [mean, b.const((8, 5)), b.const((5,))])
    head2 = b.op("MatMul", [squeezed, b.const((8, 5))])
    return b.op("Add", [head1, head2])


@pytest.mark.parametrize(
    "build",
    [_residual_concat_split, _se_depthwise, _slice_flatten_gemm, _ffn, _decoder, _shared_bn_params, _hwio_weights,
     _pooled_heads],
)
def test_every_prunable_group_removes_cleanly(build):
    b = GraphBuilder(opset=18)
    out = build(b)
    model = b.model({"x": (1, 3, 8, 8)}, [out])
    analysis = analyze(model, {"x": (1, 3, 8, 8)})
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    groups = [g for g in analysis.groups if g.frozen is None and g.channels > 1]
    assert groups
    for group in groups:
        assert_removal_matches_mask(model, group, feeds)
