"""Activations, unary math, PRelu, Clip and the Softmax family against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from smart_onnx.errors import GraphError
from smart_onnx.executor import Executor, supported_ops
from smart_onnx.executor.registry import since_version
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import run_executor

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
POS = np.abs(X) + 0.1

UNARY = [
    ("Relu", {}, X, (11, 13, 14, 21)),
    ("LeakyRelu", {"alpha": 0.2}, X, (11, 16)),
    ("LeakyRelu", {}, X, (16,)),
    ("Elu", {"alpha": 0.7}, X, (11, 22)),
    ("Selu", {}, X, (11, 22)),
    ("Selu", {"alpha": 1.5, "gamma": 2.0}, X, (13,)),
    ("Celu", {"alpha": 0.5}, X, (12, 13)),
    ("Sigmoid", {}, X, (11, 13)),
    ("HardSigmoid", {}, X, (11,)),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, X, (22,)),
    ("HardSwish", {}, X, (14, 22)),
    ("Tanh", {}, X, (11, 13)),
    ("Softplus", {}, X, (11, 22)),
    ("Softsign", {}, X, (11, 22)),
    ("Mish", {}, X, (18, 22)),
    ("Gelu", {}, X, (20,)),
    ("Gelu", {"approximate": "tanh"}, X, (20,)),
    ("Erf", {}, X, (11, 13)),
    ("Exp", {}, X, (11, 13)),
    ("Log", {}, POS, (11, 13)),
    ("Sqrt", {}, POS, (11, 13)),
    ("Neg", {}, X, (11, 13)),
    ("Abs", {}, X, (11, 13)),
    ("Reciprocal", {}, POS, (11, 13)),
    ("Floor", {}, X, (11, 13)),
    ("Ceil", {}, X, (11, 13)),
    ("Round", {}, np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6], np.float32), (11, 22)),
    ("Sign", {}, np.array([-2.0, 0.0, 3.0], np.float32), (11, 13)),
    ("Sin", {}, X, (11, 22)),
    ("Cos", {}, X, (11, 22)),
    ("Tan", {}, X / 3, (11, 22)),
    ("Asin", {}, np.tanh(X), (11,)),
    ("Acos", {}, np.tanh(X), (22,)),
    ("Atan", {}, X, (11,)),
    ("Sinh", {}, X, (11, 22)),
    ("Cosh", {}, X, (11,)),
    ("Asinh", {}, X, (22,)),
    ("Acosh", {}, POS + 1, (11,)),
    ("Atanh", {}, np.tanh(X) * 0.9, (11,)),
    ("ThresholdedRelu", {}, X, (11, 22)),
    ("ThresholdedRelu", {"alpha": 2.0}, X, (11,)),
    ("Shrink", {}, X, (11,)),
    ("Shrink", {"bias": 1.5, "lambd": 1.0}, X, (13,)),
]


@pytest.mark.parametrize(
    ("op", "attrs", "x", "opset"),
    [pytest.param(op, a, x, o, id=f"{op}-{'-'.join(map(str, a.values())) or 'default'}-v{o}")
     for op, a, x, opsets in UNARY for o in opsets],  # fmt: skip
)
def test_unary_matches_ort(op: str, attrs: dict, x: np.ndarray, opset: int) -> None:
    check(op, [x], opset=opset, **attrs)


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "HardSwish", "Gelu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_unary_keeps_dtype(op: str, dtype: type) -> None:
    model, feeds = one_node(op, [X.astype(dtype)], opset=20)
    (out,) = run_executor(model, feeds)
    assert out.dtype == dtype


@pytest.mark.parametrize(("op", "dtype"), [("Abs", np.int64), ("Neg", np.int64), ("Sign", np.int64), ("Relu", np.int8)])
def test_integer_unary(op: str, dtype: type) -> None:
    check(op, [np.array([-3, 0, 2], dtype)], opset=14)


def test_gelu_rejects_unknown_approximation() -> None:
    model, feeds = one_node("Gelu", [X], opset=20, approximate="erf")
    with pytest.raises(GraphError, match="approximate"):
        run_executor(model, feeds)


@pytest.mark.parametrize("opset", [11, 16])
@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (5,)])
def test_prelu_broadcasts_slope(opset: int, slope_shape: tuple[int, ...]) -> None:
    check("PRelu", [X, C(RNG.random(slope_shape).astype(np.float32))], opset=opset)


def test_prelu_slope_gets_gradient() -> None:
    model, _ = one_node("PRelu", [X, C(np.full((3, 1, 1), 0.25, np.float32))], opset=16)
    ex = Executor(normalize(model))
    ex({"in0": torch.from_numpy(X)})["out0"].sum().backward()
    slope = ex.weights.get("in1")
    assert isinstance(slope, torch.nn.Parameter) and slope.grad is not None
    assert float(slope.grad.abs().sum()) > 0


@pytest.mark.parametrize("opset", [11, 12, 13])
@pytest.mark.parametrize(
    "bounds",
    [(None, None), (-1.0, None), (None, 2.0), (-1.0, 2.0), (3.0, 1.0)],
    ids=["none", "min", "max", "both", "min>max"],
)
def test_clip_input_bounds(opset: int, bounds: tuple[float | None, float | None]) -> None:
    args = [X] + [None if b is None else C(np.array(b, np.float32)) for b in bounds]
    while args[-1] is None:
        args.pop()
    check("Clip", args, opset=opset)


def test_clip_bounds_are_not_parameters() -> None:
    model, _ = one_node("Clip", [X, C(np.array(-1.0, np.float32)), C(np.array(1.0, np.float32))], opset=13)
    assert Executor(normalize(model)).parameter_names() == []


def test_clip_runtime_bounds() -> None:
    check("Clip", [X, np.array(-1.0, np.float32), np.array(0.5, np.float32)], opset=13)


@pytest.mark.parametrize("attrs", [{}, {"min": -1.0}, {"min": -0.5, "max": 0.5}])
def test_clip_v6_attributes(attrs: dict) -> None:
    check("Clip", [X], opset=6, **attrs)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
def test_softmax_family(op: str, opset: int, axis: int | None) -> None:
    attrs = {} if axis is None else {"axis": axis}
    x = X if op != "Hardmax" else np.round(X)  # ties: the first maximum wins
    check(op, [x], opset=opset, **attrs)


def test_softmax_v11_coerces_to_2d() -> None:
    """Opset 11 normalises over all trailing axes from ``axis``; opset 13 over ``axis`` alone."""
    (v11,) = run_executor(*one_node("Softmax", [X], opset=11, axis=1))
    (v13,) = run_executor(*one_node("Softmax", [X], opset=13, axis=1))
    np.testing.assert_allclose(v11.reshape(2, -1).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(v13.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(v11, v13)


# Every op of the compute families (conv, linalg, pool, norm, activation, reduce, resize).
COMPUTE_OPS = (
    "Conv ConvTranspose Gemm MatMul MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization "
    "InstanceNormalization LayerNormalization GroupNormalization Relu LeakyRelu PRelu Elu Selu Celu Sigmoid "
    "HardSigmoid HardSwish Tanh Softplus Softsign Mish Gelu Erf Exp Log Sqrt Neg Abs Reciprocal Floor Ceil Round "
    "Sign Sin Cos Clip Softmax LogSoftmax Hardmax ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 "
    "ReduceL2 ReduceSumSquare ReduceLogSum ReduceLogSumExp ArgMax ArgMin Resize Einsum LpPool GlobalLpPool LRN "
    "LpNormalization MeanVarianceNormalization Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh ThresholdedRelu Shrink"
).split()


@pytest.mark.parametrize("op", COMPUTE_OPS)
def test_registered_for_every_opset_from_11(op: str) -> None:
    wanted = {since_version(op, o) for o in range(11, onnx.defs.onnx_opset_version() + 1)} - {None}
    assert wanted <= set(supported_ops()[("", op)])
