"""MaxPool, AveragePool and the global pools against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.executor.ops.onenode import check

RNG = np.random.default_rng(3)
X = RNG.standard_normal((2, 3, 9, 8)).astype(np.float32)

POOL_CASES = {
    "plain": {"kernel_shape": [3, 3]},
    "strides": {"kernel_shape": [3, 3], "strides": [2, 2]},
    "pads": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    "pads-asym": {"kernel_shape": [3, 2], "pads": [0, 1, 2, 0]},
    "ceil": {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    "ceil-pads": {"kernel_shape": [3, 3], "strides": [2, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    "ceil-drop-last": {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    "same-upper": {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    "same-lower": {"kernel_shape": [2, 3], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    "valid": {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "VALID"},
}


@pytest.mark.parametrize("opset", [11, 12, 22])
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_maxpool(opset: int, case: str) -> None:
    check("MaxPool", [X], opset=opset, **POOL_CASES[case])


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [2, 2], "dilations": [2, 2]},
        {"kernel_shape": [3, 2], "dilations": [2, 3], "pads": [1, 1, 2, 1], "ceil_mode": 1, "strides": [2, 2]},
        {"kernel_shape": [2, 2], "storage_order": 1},
    ],
    ids=["dilations", "dilations-ceil", "storage-order"],
)
def test_maxpool_more(attrs: dict) -> None:
    check("MaxPool", [X], opset=12, **attrs)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_maxpool_int8(dtype: type) -> None:
    x = RNG.integers(0, 100, (1, 2, 6, 6)).astype(dtype)
    check("MaxPool", [x], opset=12, kernel_shape=[2, 2], pads=[1, 1, 0, 0])


@pytest.mark.parametrize(
    ("shape", "attrs"),
    [((2, 3, 10), {"kernel_shape": [3], "strides": [2], "pads": [1, 0]}),
     ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [2, 2, 2], "ceil_mode": 1})],
    ids=["1d", "3d"],
)  # fmt: skip
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_1d_3d(op: str, shape: tuple, attrs: dict) -> None:
    check(op, [RNG.standard_normal(shape).astype(np.float32)], opset=17, **attrs)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(
    ("shape", "attrs"),
    [((2, 3, 9, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}),
     ((2, 3, 9, 8), {"kernel_shape": [2, 2], "dilations": [2, 1]}),
     ((2, 2, 5, 4, 6), {"kernel_shape": [2, 2, 3], "strides": [2, 1, 2], "pads": [0, 1, 1, 1, 0, 1]})],
    ids=["2d-pads-ceil", "2d-dilations", "3d"],
)  # fmt: skip
def test_maxpool_indices_output(storage_order: int, shape: tuple, attrs: dict) -> None:
    x = RNG.standard_normal(shape).astype(np.float32)
    check("MaxPool", [x], opset=12, outputs=2, storage_order=storage_order, **attrs)


@pytest.mark.parametrize("opset", [11, 19, 22])
@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("case", list(POOL_CASES))
def test_averagepool(opset: int, count_include_pad: int, case: str) -> None:
    check("AveragePool", [X], opset=opset, count_include_pad=count_include_pad, **POOL_CASES[case])


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize(
    "attrs",
    [{"kernel_shape": [2, 2], "dilations": [2, 2]},
     {"kernel_shape": [3, 2], "dilations": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1, "strides": [2, 2]}],
    ids=["dilations", "dilations-ceil-pads"],
)  # fmt: skip
def test_averagepool_dilations_v19(count_include_pad: int, attrs: dict) -> None:
    check("AveragePool", [X], opset=19, count_include_pad=count_include_pad, **attrs)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("opset", [11, 22])
@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (2, 3, 7), (1, 2, 3, 4, 5)], ids=str)
def test_global_pools(op: str, opset: int, shape: tuple) -> None:
    check(op, [RNG.standard_normal(shape).astype(np.float32)], opset=opset)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize(
    ("opset", "attrs"),
    [(11, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
     (11, {"kernel_shape": [2, 3], "auto_pad": "SAME_UPPER"}),
     (18, {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1, "dilations": [1, 2]}),
     (22, {"kernel_shape": [2, 2]})],
    ids=["pads", "same-upper", "ceil-dilations", "v22"],
)  # fmt: skip
def test_lppool(p: int, opset: int, attrs: dict) -> None:
    check("LpPool", [X], opset=opset, p=p, **attrs)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("opset", [11, 18])  # onnxruntime has no GlobalLpPool-22
def test_global_lppool(p: int, opset: int) -> None:
    check("GlobalLpPool", [X], opset=opset, p=p)
