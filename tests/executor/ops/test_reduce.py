"""Reductions and ArgMax/ArgMin against onnxruntime, with axes as attribute and as input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import run_executor, run_ort

RNG = np.random.default_rng(5)
X = RNG.standard_normal((2, 3, 4)).astype(np.float32)
POS = np.abs(X) + 0.5

# op -> (first version taking axes as an input, opsets to test, sample input)
REDUCE = {
    "ReduceSum": (13, (11, 13, 18), X),
    "ReduceMean": (18, (11, 13, 18), X),
    "ReduceMax": (18, (11, 13, 18, 20), X),
    "ReduceMin": (18, (12, 18, 20), X),
    "ReduceProd": (18, (11, 18), X),
    "ReduceL1": (18, (13, 18), X),
    "ReduceL2": (18, (11, 18), X),
    "ReduceSumSquare": (18, (13, 18), X),
    "ReduceLogSum": (18, (11, 18), POS),
    "ReduceLogSumExp": (18, (13, 18), X),
}
AXES = [None, [1], [-1], [0, 2], []]


def _reduce_args(op: str, opset: int, x: np.ndarray, axes: list[int] | None) -> tuple[list, dict]:
    if opset >= REDUCE[op][0]:
        return [x] + ([] if axes is None else [C(np.array(axes, np.int64))]), {}
    return [x], ({} if not axes else {"axes": axes})


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", AXES, ids=str)
@pytest.mark.parametrize(
    ("op", "opset"), [(op, o) for op, (_, opsets, _) in REDUCE.items() for o in opsets], ids=lambda v: str(v)
)
def test_reduce(op: str, opset: int, axes: list[int] | None, keepdims: int) -> None:
    args, attrs = _reduce_args(op, opset, REDUCE[op][2], axes)
    check(op, args, opset=opset, keepdims=keepdims, **attrs)


@pytest.mark.parametrize("axes", [None, []], ids=["missing", "empty"])
@pytest.mark.parametrize(("op", "opset"), [("ReduceSum", 13), ("ReduceMean", 18), ("ReduceMax", 20)])
def test_noop_with_empty_axes(op: str, opset: int, axes: list[int] | None) -> None:
    args, _ = _reduce_args(op, opset, X, axes)
    check(op, args, opset=opset, noop_with_empty_axes=1)


def test_reduce_runtime_axes() -> None:
    check("ReduceSum", [X, np.array([0, 2], np.int64)], opset=13, keepdims=0)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceProd", "ReduceMean"])
def test_reduce_integers_keep_dtype(op: str) -> None:
    check(op, [RNG.integers(-5, 5, (3, 4)).astype(np.int32), C(np.array([1], np.int64))], opset=18)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_bool_v20(op: str) -> None:
    check(op, [RNG.random((3, 4)) > 0.5, C(np.array([1], np.int64))], opset=20, keepdims=0)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_arg_reduce(op: str, opset: int, axis: int, keepdims: int) -> None:
    check(op, [np.round(X)], opset=opset, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("select_last_index", [0, 1])
def test_arg_reduce_ties(op: str, select_last_index: int) -> None:
    x = np.array([[1, 3, 3, 0, 0], [2, 2, 1, 1, 2]], np.float32)
    check(op, [x], opset=13, axis=1, select_last_index=select_last_index)


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceLogSumExp"])
def test_reduce_empty_set(op: str, keepdims: int) -> None:
    """-inf/+inf/0/1 results: compared exactly, as relative error is undefined at infinity."""
    args = [np.zeros((2, 0, 4), np.float32), C(np.array([1], np.int64))]
    model, feeds = one_node(op, args, opset=18, keepdims=keepdims)
    np.testing.assert_array_equal(run_executor(model, feeds)[0], run_ort(model, feeds)[0])
