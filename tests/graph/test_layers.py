"""Prunable layers: weight layouts, canonical block order, MACs against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.errors import GraphError
from smart_onnx.graph import GraphView, analyze, find_prunable_layers, value_shapes
from smart_onnx.graph.view import measured_shapes
from tests.graph import GraphBuilder


def _layers(b: GraphBuilder, inputs, outputs):
    model = b.model(inputs, outputs)
    return {layer.name: layer for layer in find_prunable_layers(model, value_shapes(model, dict(inputs)))}


def test_conv_layout_and_macs():
    b = GraphBuilder()
    y = b.conv("x", 3, 4, k=3, name="c")
    layer = _layers(b, {"x": (1, 3, 8, 8)}, [y])["c"]
    assert (layer.out_axis, layer.in_axis, layer.kernel_axes, layer.groups) == (0, 1, (2, 3), 1)
    assert layer.bias == "c.b"
    assert layer.params == 4 * 3 * 9 + 4
    assert layer.macs == 4 * 8 * 8 * 3 * 9  # out pixels x O x I x k


def test_grouped_conv_macs_use_inputs_per_group():
    b = GraphBuilder()
    y = b.conv("x", 4, 6, k=3, group=2, name="c")
    layer = _layers(b, {"x": (2, 4, 8, 8)}, [y])["c"]
    assert (layer.in_channels, layer.out_channels) == (4, 6)
    assert layer.macs == 6 * 8 * 8 * 2 * 9  # per sample, batch 2 ignored


def test_conv_transpose_layout_and_macs():
    b = GraphBuilder()
    w = b.const((4, 3, 3, 3), name="w")  # [I, O/g, kH, kW]
    y = b.op("ConvTranspose", ["x", w], name="ct", strides=[2, 2])
    layer = _layers(b, {"x": (1, 4, 5, 5)}, [y])["ct"]
    assert (layer.out_axis, layer.in_axis) == (1, 0)
    assert layer.canonical_axes == (1, 0, 2, 3)
    assert layer.canonical_shape == (3, 4, 3, 3)
    assert layer.macs == 4 * 5 * 5 * 3 * 9  # in pixels x I x O x k


@pytest.mark.parametrize(("trans_b", "shape", "out_axis"), [(1, (5, 6), 0), (0, (6, 5), 1)])
def test_gemm_layout_follows_trans_b(trans_b, shape, out_axis):
    b = GraphBuilder()
    w = b.const(shape, name="w")
    y = b.op("Gemm", ["x", w, b.const((5,), name="bias")], name="g", transB=trans_b)
    layer = _layers(b, {"x": (2, 6)}, [y])["g"]
    assert (layer.out_axis, layer.in_axis) == (out_axis, 1 - out_axis)
    assert layer.canonical_shape == (5, 6)
    assert layer.bias == "bias"
    assert layer.macs == 5 * 6


def test_matmul_macs_count_every_token():
    b = GraphBuilder()
    y = b.op("MatMul", ["x", b.const((6, 5), name="w")], name="mm")
    layer = _layers(b, {"x": (1, 7, 6)}, [y])["mm"]
    assert (layer.out_axis, layer.in_axis, layer.bias) == (1, 0, None)
    assert layer.macs == 7 * 5 * 6


def test_weight_through_transpose_and_identity_maps_axes_to_the_initializer():
    b = GraphBuilder()
    wt = b.op("Transpose", [b.op("Identity", [b.const((5, 6), name="w")])], perm=[1, 0])  # reads [6, 5]
    y = b.op("MatMul", ["x", wt], name="mm")
    layer = _layers(b, {"x": (1, 6)}, [y])["mm"]
    assert layer.weight == "w" and layer.weight_input == wt
    assert (layer.out_axis, layer.in_axis) == (0, 1)
    w = np.arange(30).reshape(5, 6)
    assert np.transpose(w, layer.canonical_axes).shape == (5, 6)
    assert np.array_equal(np.transpose(np.transpose(w, layer.canonical_axes), layer.tensor_axes), w)


def test_runtime_weights_and_batched_matmul_weights_are_not_prunable():
    b = GraphBuilder()
    y = b.op("MatMul", ["x", "x2"], name="mm")
    z = b.op("MatMul", [y, b.const((2, 4, 4))], name="bmm")
    assert _layers(b, {"x": (2, 3, 4), "x2": (2, 4, 4)}, [z]) == {}


def test_unknown_shape_gives_no_macs():
    b = GraphBuilder()
    y = b.conv("x", 3, 4, name="c")
    model = b.model({"x": (1, 3, 8, 8)}, [y])
    assert find_prunable_layers(model, {})[0].macs is None


def test_graph_view_producers_consumers_and_shapes():
    b = GraphBuilder()
    y = b.conv("x", 3, 4, name="c")
    z = b.op("Relu", [y], name="r")
    model = b.model({"x": (1, 3, 8, 8)}, [z])
    view = GraphView(model)
    assert view.producer(y).name == "c"
    assert [(n.name, slot) for n, slot in view.consumers(y)] == [("r", 0)]
    assert view.is_output(z) and view.inputs == ("x",)
    shapes = value_shapes(model, {"x": (2, 3, 16, 16)})
    assert shapes[z] == (2, 4, 16, 16)
    assert measured_shapes(model, {"x": (1, 3, 4, 4)}, [y]) == {y: (1, 4, 4, 4)}


def _padded_head():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    pads = b.op("Max", [b.ints([0, 0, 1, 1, 0, 0, 1, 1]), b.ints([0] * 8)])  # shape inference cannot see through
    out = b.conv(b.op("Pad", [y, pads]), 8, 2, name="head")
    return b.model({"x": (1, 3, 8, 8)}, [out]), out


def test_unknown_shapes_that_matter_are_measured():
    model, out = _padded_head()
    assert analyze(model, {"x": (1, 3, 8, 8)}, measure=False).layer("head").macs is None
    measured = analyze(model, {"x": (1, 3, 8, 8)})
    assert measured.layer("head").macs == 2 * 10 * 10 * 8
    assert measured.shapes[out] == (1, 2, 10, 10)


def test_a_given_shape_measure_replaces_the_reference_evaluator(monkeypatch):
    import smart_onnx.graph.analysis as analysis_mod

    model, out = _padded_head()
    asked = []

    def measure(inputs, names):
        asked.append((dict(inputs), list(names)))
        return {out: (1, 2, 10, 10)}

    monkeypatch.setattr(analysis_mod, "measured_shapes", lambda *a: pytest.fail("the reference evaluator ran"))
    analysis = analyze(model, {"x": (1, 3, 8, 8)}, measure_shapes=measure)
    assert len(asked) == 1 and asked[0][0] == {"x": (1, 3, 8, 8)} and out in asked[0][1]
    assert analysis.layer("head").macs == 2 * 10 * 10 * 8


def test_a_failing_shape_measure_falls_back_to_the_reference_evaluator():
    model, out = _padded_head()

    def measure(inputs, names):
        raise GraphError("node 'head' (Conv) failed")

    analysis = analyze(model, {"x": (1, 3, 8, 8)}, measure_shapes=measure)
    assert analysis.layer("head").macs == 2 * 10 * 10 * 8
    assert analysis.shapes[out] == (1, 2, 10, 10)
