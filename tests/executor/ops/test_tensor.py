"""Casts and tensor creation against onnxruntime: Cast, CastLike, Constant, ConstantOfShape, Range, EyeLike, Trilu."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from smart_onnx.errors import GraphError
from smart_onnx.executor import Executor
from smart_onnx.model import OnnxModel, normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import assert_matches_ort, make_model, run_executor, run_ort

RNG = np.random.default_rng(1)
F = (RNG.standard_normal((3, 4)) * 4).astype(np.float32)
P = TensorProto


@pytest.mark.parametrize(
    ("x", "to"),
    [
        (F, P.INT64),
        (F, P.INT32),
        (F, P.DOUBLE),
        (F, P.FLOAT16),
        (F, P.BOOL),
        (np.abs(F), P.UINT8),
        (F.round().astype(np.int64), P.FLOAT),
        (np.array([0, 1, 0], np.bool_), P.INT64),
        (np.array([[2, -3]], np.int64), P.INT8),
    ],
)
@pytest.mark.parametrize("opset", [11, 13, 19, 21])
def test_cast(x, to, opset):
    check("Cast", [x], opset=opset, to=to)


def test_cast_to_float8_is_a_clear_error():
    model, _ = one_node("Cast", [F], opset=19, to=P.FLOAT8E4M3FN)
    with pytest.raises(GraphError, match=r"cast_node.*to='FLOAT8E4M3FN'.*supported: FLOAT"):
        Executor(normalize(model))


@pytest.mark.parametrize("like", [np.zeros(1, np.int32), np.zeros((), np.float64), C(np.zeros(2, np.float32))])
def test_castlike(like):
    check("CastLike", [F.round().astype(np.int64), like], opset=15)


def test_castlike_float_initializer_is_not_a_parameter():
    model, _ = one_node("CastLike", [F, C(np.zeros(1, np.float32))], opset=15)
    assert Executor(normalize(model)).parameter_names() == []


@pytest.mark.parametrize(
    "attrs",
    [
        {"value": numpy_helper.from_array(F)},
        {"value_float": 2.5},
        {"value_floats": [1.0, -2.0]},
        {"value_int": 7},
        {"value_ints": [3, 4, 5]},
    ],
)
def test_constant_node_left_in_place(attrs):
    """The loader lifts Constants; the handler runs the ones kept as nodes (here built without normalize)."""
    node = helper.make_node("Constant", [], ["y"], name="c", **attrs)
    model = make_model(node, {}, ["y"], opset=13)
    expected = run_ort(model, {})[0]
    actual = run_executor(OnnxModel(model), {})[0]
    np.testing.assert_array_equal(actual, expected)
    assert actual.dtype == expected.dtype


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        (None, [2, 3]),
        (np.array([7], np.int64), [4]),
        (np.array([1.5], np.float32), [2, 0, 2]),
        (np.array([True]), [3, 1]),
        (np.array([3], np.int32), []),
    ],
)
@pytest.mark.parametrize("opset", [11, 20])
def test_constant_of_shape(value, shape, opset):
    attrs = {} if value is None else {"value": numpy_helper.from_array(value)}
    check("ConstantOfShape", [C(np.array(shape, np.int64))], opset=opset, **attrs)


@pytest.mark.parametrize(
    ("start", "limit", "delta"),
    [(0, 5, 1), (3, 9, 3), (10, 4, -2), (1, 1, 1), (5, 0, 1), (0.0, 1.0, 0.1), (2.5, -1.0, -0.75)],
)
def test_range(start, limit, delta):
    dtype = np.float32 if isinstance(start, float) else np.int64
    check("Range", [C(np.array(start, dtype)), C(np.array(limit, dtype)), C(np.array(delta, dtype))], opset=11)


def test_range_with_runtime_int32_inputs():
    check("Range", [np.array(-3, np.int32), np.array(8, np.int32), np.array(2, np.int32)], opset=13)


def test_range_float_initializers_are_not_parameters():
    args = [C(np.array(v, np.float32)) for v in (0.0, 2.0, 1.0)]
    model, _ = one_node("Range", args)
    assert Executor(normalize(model)).parameter_names() == []


@pytest.mark.parametrize("attrs", [{}, {"k": 1}, {"k": -2}, {"dtype": P.INT64}])
def test_eyelike(attrs):
    check("EyeLike", [F], opset=13, **attrs)


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 1, -2])
def test_trilu(upper, k):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    check("Trilu", [x] + ([] if k is None else [C(np.array(k, np.int64))]), opset=14, upper=upper)


def test_cast_chain_keeps_int64_exact():
    big = np.array([2**40 + 1, -(2**53) - 1], np.int64)
    nodes = [
        helper.make_node("Cast", ["x"], ["a"], to=P.INT64),
        helper.make_node("Cast", ["a"], ["b"], to=P.INT32),
    ]
    assert_matches_ort(make_model(nodes, {"x": big}, ["a", "b"], opset=13), {"x": big})
