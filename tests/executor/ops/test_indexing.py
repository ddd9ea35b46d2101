"""Indexing ops against onnxruntime: Slice, Gather, GatherElements, GatherND, ScatterND, NonZero, TopK, CumSum, Pad."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node

RNG = np.random.default_rng(2)
X = RNG.standard_normal((3, 4, 5)).astype(np.float32)
I64 = np.int64
BIG = np.iinfo(np.int64).max


def ints(*v: int) -> C:
    return C(np.array(v, I64))


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([0, 1], [2, 3], None, None),
        ([1], [BIG], [1], None),
        ([-2], [-1], [2], None),
        ([-100], [100], [0], None),
        ([0, 0], [3, 5], [0, -1], [2, 2]),
        ([-1], [-BIG], [2], [-1]),
        ([4], [0], [2], [-2]),
        ([BIG], [-BIG - 1], [1], [-1]),
        ([10], [-10], [2], [-3]),
        ([3], [1], [1], [1]),
        ([7], [BIG], [1], [-1]),  # INT_MAX ends mean "to the end" in the step's direction
        ([-2], [2**31 - 1], [2], [-2]),
        ([1], [BIG], [2], [BIG]),
    ],
)
@pytest.mark.parametrize("opset", [11, 13])
def test_slice(starts, ends, axes, steps, opset):
    args = [X, ints(*starts), ints(*ends)]
    if axes is not None or steps is not None:
        args.append(ints(*(axes if axes is not None else range(len(starts)))))
    if steps is not None:
        args.append(ints(*steps))
    check("Slice", args, opset=opset)


def test_slice_v1_attributes_and_v10_inputs():
    check("Slice", [X], opset=9, starts=[1, -3], ends=[BIG, -1], axes=[0, 2])
    check("Slice", [X, ints(3), ints(0), ints(1), ints(-1)], opset=10)


def test_slice_with_runtime_starts():
    check("Slice", [X, np.array([1], I64), ints(4), ints(2)], opset=13)


@pytest.mark.parametrize(
    ("indices", "axis"),
    [
        (np.array([0, 2], I64), 0),
        (np.array([[1, -1], [0, 3]], I64), 1),
        (np.array(-2, I64), 2),
        (np.array([2, 0], np.int32), -1),
    ],
)
@pytest.mark.parametrize("opset", [11, 13])
def test_gather(indices, axis, opset):
    check("Gather", [X, C(indices)], opset=opset, axis=axis)


def test_gather_of_shape_values_stays_int64():
    check("Gather", [np.array([3, 224, 224], I64), C(np.array(0, I64))], opset=13, axis=0)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    size = X.shape[axis]
    idx = RNG.integers(-size, size, X.shape).astype(I64)
    check("GatherElements", [X, idx], opset=13, axis=axis)


@pytest.mark.parametrize(
    ("indices", "batch_dims"),
    [
        (np.array([[0, 1], [2, -1]], I64), 0),
        (np.array([[1], [0]], I64), 0),
        (np.array([[[0, 1, 2]], [[2, 3, 4]]], I64), 0),
        (np.array([[1, 2], [0, 4], [3, 3]], I64), 1),
        (np.array([[[1], [2]], [[0], [3]], [[3], [3]]], I64), 1),
    ],
)
def test_gather_nd(indices, batch_dims):
    check("GatherND", [X, C(indices)], opset=13, batch_dims=batch_dims)


@pytest.mark.parametrize(
    ("opset", "reduction"), [(11, None), (13, None), (16, "add"), (16, "mul"), (18, "max"), (18, "min")]
)
def test_scatter_nd(opset, reduction):
    indices = np.array([[1, 2], [0, -1], [1, 2]], I64) if reduction else np.array([[1, 2], [0, -1]], I64)
    updates = RNG.standard_normal((len(indices), 5)).astype(np.float32)
    attrs = {} if reduction is None else {"reduction": reduction}
    check("ScatterND", [X, C(indices), updates], opset=opset, **attrs)


def test_nonzero():
    check("NonZero", [(X > 0.5)], opset=13)
    check("NonZero", [np.array([[0, 3], [2, 0]], I64)], opset=13)


@pytest.mark.parametrize(("axis", "largest"), [(-1, 1), (1, 1), (0, 0), (2, 0)])
@pytest.mark.parametrize("opset", [11, 24])
def test_topk(axis, largest, opset):
    check("TopK", [X, ints(2)], opset=opset, outputs=2, axis=axis, largest=largest)


def test_topk_breaks_ties_by_lower_index():
    x = np.array([[1, 3, 3, 2, 3, 1]], np.float32)
    check("TopK", [x, ints(4)], opset=11, outputs=2)
    check("TopK", [x, ints(3)], opset=11, outputs=2, largest=0)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [0, -1])
def test_cumsum(exclusive, reverse, axis):
    check("CumSum", [X, C(np.array(axis, I64))], opset=14, exclusive=exclusive, reverse=reverse)


def test_cumsum_int32_stays_int32():
    check("CumSum", [np.array([[1, 2, 3], [4, 5, 6]], np.int32), C(np.array(1, np.int32))], opset=11)


PADS = [[0, 1, 2, 0, 0, 1], [1, 0, 0, 2, 3, 0], [0, -1, 1, 0, 1, -2]]


@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [11, 13, 18])
def test_pad(pads, mode, opset):
    value = [C(np.array(1.5, np.float32))] if mode == "constant" else []
    check("Pad", [X, C(np.array(pads, I64)), *value], opset=opset, mode=mode)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_with_axes(mode):
    check("Pad", [X, ints(1, -1, 2, 2), None, ints(-1, 1)], opset=19, mode=mode)


def test_pad_int_tensor_default_value():
    check("Pad", [np.arange(6, dtype=I64).reshape(2, 3), ints(1, 0, 0, 2)], opset=13)


def test_pad_constant_value_is_not_a_parameter():
    model, _ = one_node("Pad", [X, ints(0, 0, 1, 0, 0, 1), C(np.array(0.5, np.float32))], opset=13)
    assert Executor(normalize(model)).parameter_names() == []


@pytest.mark.parametrize(
    ("op", "args", "attrs"),
    [
        ("Slice", [ints(-1), ints(-BIG), ints(1), ints(-2)], {}),
        ("Gather", [C(np.array([[2, -1]], I64))], {"axis": 1}),
        ("Pad", [ints(1, 2, 0, 1)], {"mode": "reflect"}),
        ("CumSum", [C(np.array(1, I64))], {"reverse": 1}),
    ],
)
def test_gradients_reach_the_indexed_weight(op, args, attrs):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    model, _ = one_node(op, [C(w), *args], opset=13, **attrs)
    ex = Executor(normalize(model))
    y = ex({})["out0"]
    y.backward(torch.ones_like(y))
    grad = ex.weights.get("in0").grad
    assert grad is not None and grad.shape == (3, 4) and grad.abs().sum() > 0
