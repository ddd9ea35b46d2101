"""Conv and ConvTranspose against onnxruntime: padding modes, strides, dilations, groups, ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart_onnx.executor import Executor
from smart_onnx.executor.ops.conv import Conv
from smart_onnx.model import normalize
from tests.executor.ops.onenode import C, check, one_node
from tests.helpers import run_executor, run_ort

RNG = np.random.default_rng(2)


def _r(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


CONV_CASES = {
    "plain": {},
    "pads-sym": {"pads": [1, 1, 1, 1]},
    "pads-asym": {"pads": [0, 1, 2, 1]},
    "strides": {"strides": [2, 2], "pads": [1, 1, 1, 1]},
    "dilations": {"dilations": [2, 1], "pads": [2, 1, 2, 1]},
    "same-upper": {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    "same-lower": {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    "valid": {"auto_pad": "VALID", "strides": [2, 1]},
    "kernel-shape": {"kernel_shape": [3, 3]},
}


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d(opset: int, bias: bool, case: str) -> None:
    args = [_r(2, 4, 9, 8), C(_r(6, 4, 3, 3))] + ([C(_r(6))] if bias else [])
    check("Conv", args, opset=opset, **CONV_CASES[case])


@pytest.mark.parametrize("group", [2, 4])
def test_conv_groups(group: int) -> None:
    check("Conv", [_r(1, 4, 7, 7), C(_r(8, 4 // group, 3, 3)), C(_r(8))], opset=13, group=group, pads=[1, 1, 1, 1])


def test_depthwise_conv_in_channels_last_gives_the_nchw_values_and_gradients() -> None:
    """On the CPU a depthwise Conv runs on a channels-last copy of its input (for speed): same numbers as NCHW."""
    check("Conv", [_r(2, 6, 9, 9), C(_r(6, 1, 3, 3)), C(_r(6))], opset=13, group=6, pads=[0, 0, 1, 1],
          strides=[2, 2])
    x, w = (torch.from_numpy(a).requires_grad_(True) for a in (_r(2, 6, 9, 9), _r(6, 1, 3, 3)))
    y = Conv(group=6, pads=[1, 1, 1, 1])(x, w)
    assert y.is_contiguous(memory_format=torch.channels_last)
    x0, w0 = (t.detach().clone().requires_grad_(True) for t in (x, w))
    y0 = torch.nn.functional.conv2d(x0, w0, None, 1, 1, 1, 6)
    g = torch.from_numpy(_r(*y0.shape))
    (y * g).sum().backward()
    (y0 * g).sum().backward()
    torch.testing.assert_close(y, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x0.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, w0.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        ((2, 3, 11), (4, 3, 3), {"pads": [1, 2], "strides": [2]}),
        ((2, 3, 11), (4, 3, 2), {"auto_pad": "SAME_LOWER"}),
        ((1, 2, 5, 6, 7), (3, 2, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0], "dilations": [1, 2, 1]}),
    ],
    ids=["1d", "1d-same-lower", "3d"],
)
def test_conv_1d_3d(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    check("Conv", [_r(*x_shape), C(_r(*w_shape))], opset=17, **attrs)


def test_conv_float64_keeps_dtype() -> None:
    """onnxruntime has no float64 Conv: compare with the float32 run instead."""
    x, w = _r(1, 2, 5, 5), _r(3, 2, 3, 3)
    (y64,) = run_executor(*one_node("Conv", [x.astype(np.float64), C(w.astype(np.float64))], opset=17))
    (y32,) = run_ort(*one_node("Conv", [x, C(w)], opset=17))
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, y32, rtol=1e-4, atol=1e-5)


CONVT_CASES = {
    "plain": {},
    "strides": {"strides": [2, 2]},
    "pads": {"strides": [2, 2], "pads": [1, 1, 1, 1]},
    "pads-asym": {"strides": [2, 1], "pads": [0, 1, 2, 0]},
    "output-padding": {"strides": [2, 3], "pads": [1, 1, 1, 1], "output_padding": [1, 2]},
    "dilations": {"dilations": [2, 2], "strides": [2, 2]},
    "output-shape-odd": {"strides": [2, 2], "output_shape": [10, 9]},
    "output-shape-larger": {"strides": [2, 2], "output_shape": [12, 10]},
    "output-shape-smaller": {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_shape": [7, 6]},
    "output-shape-same-upper": {"auto_pad": "SAME_UPPER", "strides": [2, 2], "output_shape": [10, 8]},
    "output-shape-same-lower": {"auto_pad": "SAME_LOWER", "strides": [2, 2], "output_shape": [10, 8]},
    "same-upper": {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    "same-lower": {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    "same-upper-odd": {"auto_pad": "SAME_UPPER", "strides": [2, 2], "kernel_shape": [4, 4]},
    "same-lower-odd": {"auto_pad": "SAME_LOWER", "strides": [2, 2], "kernel_shape": [4, 4]},
    "valid": {"auto_pad": "VALID", "strides": [2, 2]},
}


@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("case", list(CONVT_CASES))
def test_conv_transpose_2d(opset: int, case: str) -> None:
    attrs = CONVT_CASES[case]
    k = attrs.get("kernel_shape", [3, 3])
    check("ConvTranspose", [_r(1, 4, 5, 4), C(_r(4, 6, *k)), C(_r(6))], opset=opset, **attrs)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        ((1, 4, 5, 5), (4, 3, 3, 3), {"group": 2, "strides": [2, 2]}),
        ((2, 3, 7), (3, 2, 4), {"strides": [3], "pads": [1, 2]}),
        ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "output_padding": [1, 0, 1]}),
    ],
    ids=["groups", "1d", "3d"],
)
def test_conv_transpose_groups_ranks(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    check("ConvTranspose", [_r(*x_shape), C(_r(*w_shape))], opset=17, **attrs)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_conv_weights_get_gradients(op: str) -> None:
    model, feeds = one_node(op, [_r(1, 4, 6, 6), C(_r(4, 4, 3, 3)), C(_r(4))], opset=17, pads=[1, 0, 1, 2])
    ex = Executor(normalize(model))
    ex({"in0": torch.from_numpy(feeds["in0"])})["out0"].square().sum().backward()
    assert sorted(ex.parameter_names()) == ["in1", "in2"]
    for name in ("in1", "in2"):
        assert float(ex.weights.get(name).grad.abs().sum()) > 0
