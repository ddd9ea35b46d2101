"""Float32 sums over the last axis in onnxruntime's order, and decomposed LayerNorm against onnxruntime.

A LayerNorm exported as ``E[x^2] - E[x]^2`` cancels almost every digit when the mean is large
next to the spread, so the order a reduction sums in shows in the output; the executor sums
as onnxruntime does, bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from smart_onnx.executor import Executor
from smart_onnx.executor.ops._ort_sum import ort_order_sum
from smart_onnx.model import normalize

D_VALUES = [2, 3, 4, 5, 7, 8, 12, 13, 30, 36, 64, 100, 384]


def _model(nodes: list, width: int, inits: list | None = None, opset: int = 13) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 6, width])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in nodes[-1].output]
    graph = helper.make_graph(nodes, "g", [x], outs, inits or [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _ort(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _executor(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    with torch.no_grad():
        return next(iter(Executor(normalize(copy))({"x": torch.from_numpy(x)}).values())).numpy()


def _squares(width: int) -> np.ndarray:
    """Large positive values: the sum of squares E[x^2] of a LayerNorm input far from zero."""
    return ((np.random.default_rng(width).standard_normal((16, 6, width)) + 30) ** 2).astype(np.float32)


@pytest.mark.parametrize("width", D_VALUES)
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_last_axis_float32_reduction_is_bit_exact_with_onnxruntime(op: str, width: int) -> None:
    # A Relu first: the reduction reads an onnxruntime-allocated buffer, as inside a model.
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ["r"], ["y"], axes=[-1], keepdims=1)]
    proto = _model(nodes, width, opset=11)
    x = _squares(width)
    np.testing.assert_array_equal(_executor(proto, x), _ort(proto, x))


def test_the_order_matters_torch_sum_differs() -> None:
    x = torch.from_numpy(_squares(64))
    assert not torch.equal(x.sum(-1, keepdim=True), ort_order_sum(x))  # else the test above proves nothing
    torch.testing.assert_close(x.double().sum(-1, keepdim=True), ort_order_sum(x).double(), rtol=1e-6, atol=0)


def test_gradient_of_the_reordered_sum_is_ones() -> None:
    x = torch.randn(3, 5, 13, requires_grad=True)
    ort_order_sum(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def _layernorm_moments(width: int) -> onnx.ModelProto:
    """LayerNorm as E[x^2] - E[x]^2, Sqrt, Reciprocal, Mul (a TF-style export)."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
        helper.make_node("Mul", ["x", "x"], ["xx"]),
        helper.make_node("ReduceMean", ["xx"], ["m2"], axes=[-1]),
        helper.make_node("Mul", ["m", "m"], ["mm"]),
        helper.make_node("Sub", ["m2", "mm"], ["var"]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Reciprocal", ["sd"], ["inv"]),
        helper.make_node("Sub", ["x", "m"], ["xc"]),
        helper.make_node("Mul", ["xc", "inv"], ["n"]),
        helper.make_node("Mul", ["n", "g"], ["ng"]),
        helper.make_node("Add", ["ng", "b"], ["y"]),
    ]
    rng = np.random.default_rng(1)
    inits = [helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-6]),
             onnx.numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "g"),
             onnx.numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "b")]
    return _model(nodes, width, inits)


def _layernorm_centred(width: int) -> onnx.ModelProto:
    """LayerNorm as torch's legacy exporter writes it: Sub mean, Pow 2, ReduceMean, Add, Sqrt, Div."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
        helper.make_node("Sub", ["x", "m"], ["xc"]),
        helper.make_node("Pow", ["xc", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["xc", "sd"], ["y"]),
    ]
    inits = [helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-5]), helper.make_tensor("two", TensorProto.FLOAT,
                                                                                          [], [2.0])]
    return _model(nodes, width, inits)


@pytest.mark.parametrize("width", [30, 64, 384])
@pytest.mark.parametrize("build", [_layernorm_moments, _layernorm_centred], ids=["moments", "centred"])
def test_decomposed_layernorm_matches_onnxruntime(build, width: int) -> None:
    proto = build(width)
    x = (np.random.default_rng(2).standard_normal((16, 6, width)) * 0.5 + 40).astype(np.float32)
    expected = _ort(proto, x)
    got = _executor(proto, x)
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-6
