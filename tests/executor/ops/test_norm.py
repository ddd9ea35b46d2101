"""Batch, instance, layer and group normalization against onnxruntime, and their gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart_onnx.errors import GraphError
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import run_executor

RNG = np.random.default_rng(4)
X = RNG.standard_normal((2, 4, 5, 3)).astype(np.float32) * 2 + 1


def _r(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _bn_args(c: int = 4) -> list:
    return [C(_r(c)), C(_r(c)), C(_r(c)), C(RNG.random(c).astype(np.float32) + 0.5)]


@pytest.mark.parametrize("opset", [11, 14, 15, 21])
@pytest.mark.parametrize("attrs", [{}, {"epsilon": 1e-2, "momentum": 0.5}], ids=["default", "eps"])
@pytest.mark.parametrize("shape", [(2, 4, 5, 3), (3, 4), (2, 4, 6)], ids=str)
def test_batchnorm(opset: int, attrs: dict, shape: tuple) -> None:
    check("BatchNormalization", [_r(*shape), *_bn_args()], opset=opset, **attrs)


def test_batchnorm_training_mode_rejected() -> None:
    model, feeds = one_node("BatchNormalization", [X, *_bn_args()], opset=15, training_mode=1)
    with pytest.raises(GraphError, match="training_mode"):
        run_executor(model, feeds)


def test_batchnorm_scale_bias_trainable_stats_constant() -> None:
    model, _ = one_node("BatchNormalization", [X, *_bn_args()], opset=15)
    ex = Executor(normalize(model))
    ex({"in0": torch.from_numpy(X)})["out0"].square().sum().backward()
    assert sorted(ex.parameter_names()) == ["in1", "in2"]
    assert all(float(ex.weights.get(n).grad.abs().sum()) > 0 for n in ("in1", "in2"))


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("shape", [(2, 4, 5, 3), (2, 4, 7)], ids=str)
def test_instancenorm(opset: int, shape: tuple) -> None:
    check("InstanceNormalization", [_r(*shape), C(_r(4)), C(_r(4))], opset=opset, epsilon=1e-3)


@pytest.mark.parametrize("opset", [17, 18, 21])
@pytest.mark.parametrize("axis", [-1, -2, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(opset: int, axis: int, bias: bool) -> None:
    norm_shape = X.shape[axis:]
    args = [X, C(_r(*norm_shape))] + ([C(_r(*norm_shape))] if bias else [])
    check("LayerNormalization", args, opset=opset, axis=axis, epsilon=1e-3)


def test_layernorm_extra_outputs() -> None:
    check("LayerNormalization", [X, C(_r(5, 3)), C(_r(5, 3))], opset=17, outputs=3, axis=2)


def test_layernorm_broadcast_scale() -> None:
    check("LayerNormalization", [X, C(_r(3)), C(_r(1))], opset=17, axis=-2)


def test_layernorm_float16_keeps_dtype() -> None:
    x = X.astype(np.float16)
    (y,) = run_executor(*one_node("LayerNormalization", [x, C(_r(3).astype(np.float16))], opset=17))
    (ref,) = run_executor(*one_node("LayerNormalization", [X, C(_r(3))], opset=17))
    assert y.dtype == np.float16 and y.shape == ref.shape


def test_layernorm_gradients() -> None:
    model, _ = one_node("LayerNormalization", [X, C(_r(3)), C(_r(3))], opset=17)
    ex = Executor(normalize(model))
    ex({"in0": torch.from_numpy(X)})["out0"].square().sum().backward()
    assert sorted(ex.parameter_names()) == ["in1", "in2"]
    assert all(float(ex.weights.get(n).grad.abs().sum()) > 0 for n in ("in1", "in2"))


@pytest.mark.parametrize(("opset", "param_len"), [(18, 2), (21, 4)])
def test_groupnorm(opset: int, param_len: int) -> None:
    check("GroupNormalization", [X, C(_r(param_len)), C(_r(param_len))], opset=opset, num_groups=2, epsilon=1e-3)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("size", [1, 3, 5])
def test_lrn(opset: int, size: int) -> None:
    check("LRN", [_r(2, 6, 5, 3)], opset=opset, size=size, alpha=0.01, beta=0.6, bias=1.5)


@pytest.mark.parametrize("size", [2, 4])
@pytest.mark.parametrize("shape", [(2, 6, 5, 3), (2, 6, 7)], ids=str)
def test_lrn_even_size_rank3_matches_spec(size: int, shape: tuple) -> None:
    """onnxruntime runs only odd sizes on rank-4 inputs (and the ONNX reference LRN loops over
    the batch axis), so the spec formula itself is the oracle here."""
    x = _r(*shape)
    model, feeds = one_node("LRN", [x], opset=13, size=size, alpha=0.01, beta=0.6, bias=1.5)
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    square_sum = np.stack([(x[:, max(0, c - lo) : c + hi + 1] ** 2).sum(axis=1) for c in range(x.shape[1])], axis=1)
    expected = x / (1.5 + 0.01 / size * square_sum) ** 0.6
    np.testing.assert_allclose(run_executor(model, feeds)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [-1, 1])
def test_lp_normalization(opset: int, p: int, axis: int) -> None:
    x = X.copy()
    x[0, :, 0, :] = 0  # an all-zero slice along either axis normalizes to zeros
    check("LpNormalization", [x], opset=opset, p=p, axis=axis)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [0, 2, 3], [1], [2, 3]], ids=str)
def test_mean_variance_normalization(opset: int, axes: list[int] | None) -> None:
    check("MeanVarianceNormalization", [X], opset=opset, **({} if axes is None else {"axes": axes}))
