"""Tests of hardware profiles, the checker and the search constraints; small models to judge."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import TensorProto, helper

from smart_onnx.model import OnnxModel
from tests.graph import GraphBuilder

INPUT = {"x": (1, 8, 6, 6)}


def small_cnn(c1: int = 32, weights: Mapping[str, np.ndarray] | None = None) -> OnnxModel:
    """x[1,8,6,6] -> conv c1 (8->c1, 3x3) -> Relu -> conv c2 (c1->32, 1x1) -> GAP -> Flatten -> Gemm fc (32->10).

    ``weights`` replaces initializers by name (``c1.w``, ``c2.w``, ``fc.w`` ...). ``fc``'s
    10 outputs are a graph output: its group is frozen.
    """
    b = GraphBuilder()
    y = b.op("Relu", [b.conv("x", 8, c1, k=3, name="c1")])
    y = b.op("GlobalAveragePool", [b.conv(y, c1, 32, name="c2")])
    y = b.op("Flatten", [y])
    out = b.op("Gemm", [y, b.const((10, 32), name="fc.w"), b.const((10,), name="fc.b")], name="fc", transB=1)
    for name, value in (weights or {}).items():
        assert b.inits[name].shape == value.shape, name
        b.inits[name] = value.astype(np.float32)
    model = b.model(INPUT, [out])
    # A typed output: the rewriter's full ONNX check needs it.
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 10]))
    return model


def weight(name: str, c1: int = 32) -> np.ndarray:
    """A copy of the initializer ``name`` of ``small_cnn(c1)``."""
    return np.array(small_cnn(c1).weight(name))


def magnitude_prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Unstructured: zero the smallest-magnitude fraction of the elements."""
    out = w.copy()
    out.flat[np.argsort(np.abs(w), axis=None)[: int(sparsity * w.size)]] = 0
    return out
