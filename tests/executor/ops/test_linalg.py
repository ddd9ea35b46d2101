"""Gemm and MatMul against onnxruntime, and their weights as trainable parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node

RNG = np.random.default_rng(1)


def _r(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("opset", [11, 13, 21])
@pytest.mark.parametrize(
    "attrs",
    [{}, {"transA": 1}, {"transB": 1}, {"transA": 1, "transB": 1}, {"alpha": 0.5, "beta": 2.0}],
    ids=["plain", "transA", "transB", "both", "alpha-beta"],
)
@pytest.mark.parametrize("c_shape", [None, (4,), (3, 4), (1, 4), (3, 1), ()], ids=str)
def test_gemm(opset: int, attrs: dict, c_shape: tuple[int, ...] | None) -> None:
    a = _r(5, 3) if attrs.get("transA") else _r(3, 5)
    b = _r(4, 5) if attrs.get("transB") else _r(5, 4)
    args = [a, C(b)] + ([] if c_shape is None else [C(_r(*c_shape))])
    check("Gemm", args, opset=opset, **attrs)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((3, 5), (5, 4)), ((2, 3, 5), (5, 4)), ((5,), (5, 4)), ((3, 5), (5,)), ((2, 1, 3, 5), (4, 5, 2)), ((5,), (5,))],
    ids=str,
)
def test_matmul(opset: int, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    check("MatMul", [_r(*a_shape), C(_r(*b_shape))], opset=opset)


def test_matmul_two_runtime_inputs_float64() -> None:
    check("MatMul", [_r(2, 3, 4).astype(np.float64), _r(2, 4, 5).astype(np.float64)], opset=13)


@pytest.mark.parametrize(
    ("op", "args", "attrs"),
    [("Gemm", [_r(3, 5), C(_r(4, 5)), C(_r(4))], {"transB": 1}), ("MatMul", [_r(2, 3, 5), C(_r(5, 4))], {})],
    ids=["Gemm", "MatMul"],
)
def test_weights_are_parameters_with_gradients(op: str, args: list, attrs: dict) -> None:
    model, feeds = one_node(op, args, opset=13, **attrs)
    ex = Executor(normalize(model))
    ex({k: torch.from_numpy(v) for k, v in feeds.items()})["out0"].square().sum().backward()
    names = [f"in{i}" for i, a in enumerate(args) if isinstance(a, C)]
    assert sorted(ex.parameter_names()) == names
    for name in names:
        grad = ex.weights.get(name).grad
        assert grad is not None and float(grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("equation", "shapes"),
    [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij,jk", [(3, 4), (4, 5)]),
     ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]), ("ij->ji", [(3, 4)]),
     ("bhid, bhjd -> bhij", [(2, 2, 3, 4), (2, 2, 5, 4)]), ("i,i->", [(4,), (4,)])],
    ids=lambda v: str(v),
)  # fmt: skip
@pytest.mark.parametrize("opset", [12, 13, 21])
def test_einsum(equation: str, shapes: list[tuple[int, ...]], opset: int) -> None:
    check("Einsum", [_r(*s) for s in shapes], opset=opset, equation=equation)
