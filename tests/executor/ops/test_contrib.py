"""com.microsoft Attention and MultiHeadAttention (onnxruntime's fused transformer ops) against onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from onnx import helper

from smart_onnx.errors import GraphError
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.helpers import assert_matches_ort, make_model

RNG = np.random.default_rng(0)
B, S, L, D, HEADS = 2, 5, 7, 16, 4


def _model(op: str, feeds: Mapping[str, np.ndarray], inputs: list[str], inits: Mapping[str, np.ndarray],
           **attrs: Any):
    node = helper.make_node(op, inputs, ["y"], domain="com.microsoft", name=f"{op}_node", num_heads=HEADS, **attrs)
    return make_model(node, feeds, ["y"], inits, opset=17, extra_opsets={"com.microsoft": 1})


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


MASKS = {
    "none": None,
    "key-lengths": np.array([S, 3], np.int32),
    "mask-2d": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32),
    "mask-3d": (RNG.random((B, S, S)) > 0.3).astype(np.int32),
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("causal", [0, 1], ids=["bidirectional", "causal"])
def test_attention_matches_onnxruntime(mask: str, causal: int) -> None:
    feeds = {"x": _f(B, S, D)}
    inputs = ["x", "w", "b"]
    if MASKS[mask] is not None:
        feeds["mask"] = MASKS[mask]
        inputs.append("mask")
    assert_matches_ort(_model("Attention", feeds, inputs, {"w": _f(D, 3 * D), "b": _f(3 * D)}, unidirectional=causal),
                       feeds)


def test_attention_with_unequal_qkv_sizes_and_a_scale() -> None:
    feeds = {"x": _f(B, S, D)}
    model = _model("Attention", feeds, ["x", "w", "b"], {"w": _f(D, 16 + 16 + 8), "b": _f(40)},
                   qkv_hidden_sizes=[16, 16, 8], scale=0.3)
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("mask", ["none", "key-lengths", "mask-2d"])
def test_multihead_attention_matches_onnxruntime(mask: str) -> None:
    feeds = {"q": _f(B, S, D), "k": _f(B, L, D), "v": _f(B, L, D)}  # cross-attention: L keys for S queries
    inputs = ["q", "k", "v", "b"]
    if mask == "key-lengths":
        feeds["mask"] = np.array([L, 4], np.int32)
    elif mask == "mask-2d":
        feeds["mask"] = np.array([[1] * 5 + [0] * 2, [1] * 7], np.int32)
    if mask != "none":
        inputs.append("mask")
    assert_matches_ort(_model("MultiHeadAttention", feeds, inputs, {"b": _f(3 * D)}), feeds)


def test_attention_trains_its_packed_weights() -> None:
    feeds = {"x": _f(B, S, D)}
    model = normalize(_model("Attention", feeds, ["x", "w", "b"], {"w": _f(D, 3 * D), "b": _f(3 * D)}))
    names = dict(Executor(model).weights.named_weights())
    assert {"w", "b"} <= set(names)


@pytest.mark.parametrize(("inputs", "attrs", "match"), [
    (["x", "w", "b", "", "past"], {}, "inputs \\['past'\\]"),
    (["x", "w", "b"], {"do_rotary": 1}, "attributes \\['do_rotary'\\]"),
])
def test_attention_forms_not_run_are_refused_by_name(inputs: list[str], attrs: dict, match: str) -> None:
    feeds = {"x": _f(B, S, D)}
    if "past" in inputs:
        feeds["past"] = _f(2, B, HEADS, 1, D // HEADS)
    model = normalize(_model("Attention", feeds, inputs, {"w": _f(D, 3 * D), "b": _f(3 * D)}, **attrs))
    with pytest.raises(GraphError, match=f"Attention_node.*{match}"):
        Executor(model)


def _one(op: str, feeds: Mapping[str, np.ndarray], inputs: list[str], inits: Mapping[str, np.ndarray],
         outputs: int = 1, **attrs: Any):
    outs = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, inputs, outs, domain="com.microsoft", name=f"{op}_node", **attrs)
    return make_model(node, feeds, outs, inits, opset=17, extra_opsets={"com.microsoft": 1})


@pytest.mark.parametrize("outputs", [1, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_skip_layer_normalization_matches_onnxruntime(outputs: int, bias: bool) -> None:
    feeds = {"x": _f(B, S, D), "skip": _f(B, S, D)}
    inits = {"g": _f(D), "beta": _f(D), **({"bias": _f(D)} if bias else {})}
    inputs = ["x", "skip", "g", "beta", *(["bias"] if bias else [])]
    assert_matches_ort(_one("SkipLayerNormalization", feeds, inputs, inits, outputs, epsilon=1e-5), feeds)


@pytest.mark.parametrize(("op", "inputs"), [("BiasGelu", ["x", "b"]), ("FastGelu", ["x", "b"]), ("FastGelu", ["x"])])
def test_gelu_forms_match_onnxruntime(op: str, inputs: list[str]) -> None:
    feeds = {"x": _f(B, S, D)}
    assert_matches_ort(_one(op, feeds, inputs, {"b": _f(D)} if "b" in inputs else {}), feeds)
