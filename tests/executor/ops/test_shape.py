"""Shape/layout ops against onnxruntime: Reshape, Transpose, Flatten, (Un)Squeeze, Expand, Tile,
Concat, Split, Shape, Size, Identity, Dropout."""

from __future__ import annotations

import numpy as np
import onnx.defs
import pytest
import torch
from onnx import TensorProto, helper

from smart_onnx.errors import GraphError, UnsupportedOpError
from smart_onnx.executor import Executor
from smart_onnx.executor.registry import resolve, since_version
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import assert_matches_ort, make_model

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4)).astype(np.float32)
I64 = np.int64


@pytest.mark.parametrize("opset", [11, 13, 14, 19])
@pytest.mark.parametrize("shape", [[0, -1], [4, 6], [-1], [2, 0, 2, 2], [1, 2, 3, 4]])
def test_reshape(opset, shape):
    check("Reshape", [X, C(np.array(shape, I64))], opset=opset)


def test_reshape_allowzero_and_runtime_shape():
    empty = np.zeros((0, 4), np.float32)
    check("Reshape", [empty, C(np.array([4, 0], I64))], opset=14, allowzero=1)
    check("Reshape", [X.astype(np.int64), np.array([3, -1], I64)], opset=13)


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]])
@pytest.mark.parametrize("opset", [11, 13, 21])
def test_transpose(perm, opset):
    attrs = {} if perm is None else {"perm": perm}
    check("Transpose", [X], opset=opset, **attrs)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    check("Flatten", [X], opset=13, axis=axis)


@pytest.mark.parametrize(
    ("op", "x", "axes"),
    [
        ("Squeeze", X[:, :1], [1]),
        ("Squeeze", X[:1, :1], [0, -2]),
        ("Squeeze", X[:1, :1], None),
        ("Unsqueeze", X, [0]),
        ("Unsqueeze", X, [-1, 1]),
        ("Unsqueeze", X, [4, 0]),
    ],
)
@pytest.mark.parametrize("opset", [11, 13, 21])
def test_squeeze_unsqueeze(op, x, axes, opset):
    if axes is None:
        check(op, [x], opset=opset)
    elif opset < 13:
        check(op, [x], opset=opset, axes=axes)
    else:
        check(op, [x, C(np.array(axes, I64))], opset=opset)


def test_squeeze_of_a_non_unit_axis_names_the_node():
    model, feeds = one_node("Squeeze", [X, C(np.array([1], I64))], opset=13)
    with pytest.raises(GraphError, match="squeeze_node"):
        Executor(normalize(model))(feeds)


@pytest.mark.parametrize("shape", [[2, 3, 4], [3, 1], [2, 1, 1, 1], [1], [5, 2, 3, 4]])
def test_expand_broadcasts_both_ways(shape):
    check("Expand", [X[:, :1, :], C(np.array(shape, I64))], opset=13)


@pytest.mark.parametrize("repeats", [[1, 1, 1], [2, 1, 3], [1, 0, 2]])
def test_tile(repeats):
    check("Tile", [X, C(np.array(repeats, I64))], opset=13)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("opset", [11, 13])
def test_concat(axis, opset):
    check("Concat", [X, C(X * 2), X + 1], opset=opset, axis=axis)


def test_concat_keeps_int64():
    check("Concat", [np.array([1, 2], I64), C(np.array([-1], I64))], axis=0)


@pytest.mark.parametrize(
    ("opset", "split", "outputs", "attrs"),
    [
        (11, None, 2, {"axis": 0}),
        (11, [1, 4], 2, {"axis": -1}),
        (13, None, 3, {"axis": 1}),
        (13, [1, 1, 3], 3, {"axis": 2}),
        (18, [2, 1], 2, {"axis": 1}),
        (18, None, 3, {"axis": 2, "num_outputs": 3}),  # uneven: 5 -> 2 + 2 + 1
        (18, None, 2, {"axis": 1, "num_outputs": 2}),  # 3 -> 2 + 1
    ],
)
def test_split(opset, split, outputs, attrs):
    x = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    if opset < 13:
        check("Split", [x], opset=opset, outputs=outputs, **({"split": split} if split else {}), **attrs)
    else:
        extra = [] if split is None else [C(np.array(split, I64))]
        check("Split", [x, *extra], opset=opset, outputs=outputs, **attrs)


@pytest.mark.parametrize(("start", "end"), [(None, None), (1, None), (-2, None), (0, -1), (-10, 10), (2, 1)])
def test_shape(start, end):
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    check("Shape", [X], opset=15 if attrs else 13, **attrs)


@pytest.mark.parametrize("opset", [11, 13, 19])
def test_size_and_identity(opset):
    check("Size", [X], opset=opset)
    check("Identity", [X.astype(np.int32)], opset=opset)


@pytest.mark.parametrize(("opset", "outputs"), [(11, 1), (11, 2), (13, 2), (18, 1)])
def test_dropout_is_identity_at_inference(opset, outputs):
    extra = [C(np.array(0.3, np.float32))] if opset >= 12 else []
    check("Dropout", [X, *extra], opset=opset, outputs=outputs)


def test_dropout_ratio_initializer_is_not_a_parameter():
    model, _ = one_node("Dropout", [X, C(np.array(0.3, np.float32))], opset=13)
    assert Executor(normalize(model)).parameter_names() == []


def test_reshape_gradient_flows_to_weights():
    w = RNG.standard_normal((2, 6)).astype(np.float32)
    node = helper.make_node("Reshape", ["w", "s"], ["y"], name="r")
    model = make_model(node, {}, ["y"], {"w": w, "s": np.array([3, 4], I64)}, 13)
    ex = Executor(normalize(model))
    assert ex.parameter_names() == ["w"]
    ex({})["y"].sum().backward()
    assert torch.equal(ex.weights.get("w").grad, torch.ones(2, 6))


def test_bad_attribute_value_names_node_attribute_and_choices():
    model, _ = one_node("Reshape", [X, C(np.array([-1], I64))], opset=14, allowzero=2)
    with pytest.raises(GraphError, match=r"reshape_node.*allowzero=2.*0, 1"):
        Executor(normalize(model))


def test_unknown_or_missing_attribute_names_the_node():
    model, _ = one_node("Transpose", [X], opset=13, perms=[0, 1, 2])
    with pytest.raises(GraphError, match=r"transpose_node.*perms"):
        Executor(normalize(model))
    model, _ = one_node("Concat", [X, X], opset=13)
    with pytest.raises(GraphError, match=r"concat_node.*axis"):
        Executor(normalize(model))


def test_shape_output_feeds_shape_math():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    assert_matches_ort(make_model(nodes, {"x": X}, ["f", "y"], opset=13), {"x": X})


# Every op of the shape/tensor/indexing/logic/control families, checked at each opset ONNX knows.
OWN_OPS = (
    "Reshape Transpose Flatten Squeeze Unsqueeze Expand Tile Concat Split Shape Size Identity Dropout "
    "Cast CastLike Constant ConstantOfShape Range EyeLike Trilu "
    "Slice Gather GatherElements GatherND ScatterND NonZero TopK CumSum Pad "
    "Equal Greater Less GreaterOrEqual LessOrEqual Not And Or Xor Where Max Min Sum Mean Mod IsNaN IsInf If Loop"
).split()


@pytest.mark.parametrize("op", OWN_OPS)
def test_every_opset_from_11_resolves(op):
    missing = []
    for opset in range(11, onnx.defs.onnx_opset_version() + 1):
        if since_version(op, opset) is None:  # the op is newer than this opset
            continue
        try:
            resolve(helper.make_node(op, [], []), opset)
        except UnsupportedOpError:
            missing.append(opset)
    assert not missing, f"{op} has no handler at opsets {missing}"


NEWEST = [
    ("Reshape", [X, C(np.array([0, -1], I64))], {}),
    ("Transpose", [X], {"perm": [1, 2, 0]}),
    ("Flatten", [X], {"axis": 2}),
    ("Squeeze", [X[:1], C(np.array([0], I64))], {}),
    ("Unsqueeze", [X, C(np.array([-1], I64))], {}),
    ("Shape", [X], {"start": 1}),
    ("Size", [X], {}),
    ("Identity", [X], {}),
    ("Cast", [X], {"to": TensorProto.INT32}),
    ("CastLike", [X, np.zeros(1, np.float64)], {}),
    ("ConstantOfShape", [C(np.array([2, 2], I64))], {}),
    ("Pad", [X, C(np.array([0, 1, 1, 1, 0, 0], I64))], {"mode": "wrap"}),
    ("TopK", [X, C(np.array([2], I64))], {}),
    ("Dropout", [X], {}),
]


@pytest.mark.parametrize(("op", "args", "attrs"), NEWEST, ids=[c[0] for c in NEWEST])
@pytest.mark.parametrize("opset", [21, 23, 25])
def test_newest_versions(op, args, attrs, opset):
    check(op, args, opset=opset, outputs=2 if op == "TopK" else 1, **attrs)
