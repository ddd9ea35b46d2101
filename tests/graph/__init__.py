"""Tests of the analysis stage; :class:`GraphBuilder` writes small ONNX graphs for them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from onnx import helper

from smart_onnx.model import OnnxModel, normalize
from tests.helpers import make_model


class GraphBuilder:
    """Accumulates nodes and random float32 initializers; ``model()`` wraps them up."""

    def __init__(self, opset: int = 17) -> None:
        self.opset = opset
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(0)
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, shape: Sequence[int], name: str | None = None, value: np.ndarray | None = None) -> str:
        name = name or self._name("c")
        self.inits[name] = (np.asarray(value) if value is not None
                            else self.rng.standard_normal(tuple(shape)).astype(np.float32))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const((len(values),), value=np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs: Sequence[str], outputs: int = 1, name: str | None = None, **attrs):
        name = name or self._name(op_type.lower())
        outs = [f"{name}_out{i}" if outputs > 1 else f"{name}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs if outputs > 1 else outs[0]

    def conv(self, x: str, cin: int, cout: int, k: int = 1, group: int = 1, bias: bool = True,
             name: str | None = None, **attrs) -> str:
        name = name or self._name("conv")
        w = self.const((cout, cin // group, k, k), name=f"{name}.w")
        inputs = [x, w] + ([self.const((cout,), name=f"{name}.b")] if bias else [])
        return self.op("Conv", inputs, name=name, group=group, pads=[k // 2] * 4, **attrs)

    def model(self, inputs: Mapping[str, Sequence[int]], outputs: Sequence[str],
              dtypes: Mapping[str, type] | None = None) -> OnnxModel:
        feeds = {n: np.zeros(s, dtype=(dtypes or {}).get(n, np.float32)) for n, s in inputs.items()}
        return normalize(make_model(self.nodes, feeds, outputs, self.inits, opset=self.opset))
