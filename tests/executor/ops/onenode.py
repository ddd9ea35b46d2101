"""One-node models for op tests: arrays are runtime inputs, ``C(array)`` initializers, None an empty input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from tests.helpers import assert_matches_ort, make_model

__all__ = ["C", "check", "one_node"]


@dataclass(frozen=True)
class C:
    """An input given as an initializer (constant) instead of a runtime feed."""

    value: Any


def one_node(
    op_type: str, args: Sequence[Any], *, opset: int = 17, outputs: int = 1, **attrs: Any
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A model holding one ``op_type`` node named ``<op>_node``, and its feeds."""
    names: list[str] = []
    feeds: dict[str, np.ndarray] = {}
    inits: dict[str, np.ndarray] = {}
    for i, a in enumerate(args):
        if a is None:
            names.append("")
            continue
        names.append(f"in{i}")
        if isinstance(a, C):
            inits[f"in{i}"] = np.asarray(a.value)
        else:
            feeds[f"in{i}"] = np.asarray(a)
    outs = [f"out{i}" for i in range(outputs)]
    node = helper.make_node(op_type, names, outs, name=f"{op_type.lower()}_node", **attrs)
    return make_model(node, feeds, outs, inits, opset), feeds


def check(op_type: str, args: Sequence[Any], *, opset: int = 17, outputs: int = 1, **attrs: Any) -> None:
    """The executor matches onnxruntime on a one-node model (exact for integers and bools)."""
    model, feeds = one_node(op_type, args, opset=opset, outputs=outputs, **attrs)
    assert_matches_ort(model, feeds)
