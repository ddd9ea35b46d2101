"""Comparison, boolean and selection ops against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.executor.ops.onenode import C, check

RNG = np.random.default_rng(3)
A = RNG.integers(-3, 4, (2, 3, 4)).astype(np.float32)
B = RNG.integers(-3, 4, (3, 1)).astype(np.float32)
M = RNG.integers(-5, 6, (2, 3)).astype(np.int64)
T = np.array([[True, False, True]])
U = np.array([[True], [False]])


@pytest.mark.parametrize("op", ["Equal", "Greater", "Less"])
@pytest.mark.parametrize("opset", [11, 13, 19])
@pytest.mark.parametrize(("a", "b"), [(A, B), (M, C(np.array([0, 2, -1], np.int64)))])
def test_comparisons(op, opset, a, b):
    check(op, [a, b], opset=opset)


@pytest.mark.parametrize("op", ["GreaterOrEqual", "LessOrEqual"])
@pytest.mark.parametrize("opset", [12, 16])
def test_or_equal_comparisons(op, opset):
    check(op, [A, B], opset=opset)
    check(op, [M, np.int64(1)], opset=opset)


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_boolean_binary(op):
    check(op, [T, U], opset=13)


def test_not():
    check("Not", [T], opset=13)


@pytest.mark.parametrize("opset", [11, 16])
def test_where(opset):
    check("Where", [A > 0, A, C(B)], opset=opset)
    check("Where", [T, M, np.int64(-7)], opset=opset)


@pytest.mark.parametrize("op", ["Max", "Min", "Sum", "Mean"])
@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("opset", [11, 13])
def test_variadic(op, count, opset):
    inputs = [A, B, C(np.float32(0.5))][:count]
    check(op, inputs, opset=opset)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_variadic_int64(op):
    check(op, [M, np.array([2, -2, 0], np.int64)], opset=13)


@pytest.mark.parametrize(
    ("a", "b", "fmod"),
    [
        (M, np.array([3, -4, 2], np.int64), 0),
        (M, np.array([3, -4, 2], np.int64), 1),
        (M.astype(np.int32), np.array([-3], np.int32), 0),
        (A + 0.25, np.array([1.5, -2.0, 0.75, 3.0], np.float32), 1),
    ],
)
@pytest.mark.parametrize("opset", [11, 13])
def test_mod(a, b, fmod, opset):
    check("Mod", [a, b], opset=opset, fmod=fmod)


SPECIAL = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.0], np.float32)


@pytest.mark.parametrize("opset", [11, 13, 20])
def test_isnan(opset):
    check("IsNaN", [SPECIAL], opset=opset)


@pytest.mark.parametrize(("negative", "positive"), [(1, 1), (0, 1), (1, 0), (0, 0)])
@pytest.mark.parametrize("opset", [11, 20])
def test_isinf(negative, positive, opset):
    check("IsInf", [SPECIAL], opset=opset, detect_negative=negative, detect_positive=positive)
