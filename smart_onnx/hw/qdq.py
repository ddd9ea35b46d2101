"""Read a QDQ-quantized model's weights for the checker: a float view whose weights are the integer tensors.

A QDQ model (what ``onnxruntime.quantization`` writes, what TensorRT and NPU toolchains
read) stores each quantized weight as an integer initializer ``q`` behind a
``DequantizeLinear(q, scale, zero_point, axis)`` node, and wraps activations in
``QuantizeLinear`` -> ``DequantizeLinear`` pairs. :func:`dequantized_view` turns such a
model into the float model the checker and the analysis understand:

* every ``DequantizeLinear`` of a constant integer tensor becomes a float initializer named
  after its output, holding ``(q - zero_point) * scale``: a weight is zero exactly where its
  integer value equals the zero point, so patterns are judged on the quantized integers;
* every ``QuantizeLinear`` -> ``DequantizeLinear`` pair on an activation is bypassed (it
  keeps the shape and the channels), so channel groups are traced as in the float model.

Node names do not change, so layers match the float original by name. numpy/onnx only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from smart_onnx.model import OnnxModel, copy_proto, normalize, tensor_to_array

__all__ = ["QuantizedWeight", "dequantized_view", "is_quantized"]

_DQ, _Q = "DequantizeLinear", "QuantizeLinear"
_DOMAINS = ("", "ai.onnx", "com.microsoft")


@dataclass(frozen=True)
class QuantizedWeight:
    """One weight read from a DequantizeLinear chain.

    Attributes:
        value: the name of the float view's initializer (the DequantizeLinear output).
        tensor: the integer initializer holding the weight.
        dtype: its integer type (``int8``, ``uint8``, ``int4`` ...).
        axis: the per-channel axis, or None for one scale for the whole tensor.
        zero_point_zero: every zero point is 0 (symmetric quantization).
        zeros: integer values equal to their zero point (the weight's exact zeros).
        size: elements.
    """

    value: str
    tensor: str
    dtype: str
    axis: int | None
    zero_point_zero: bool
    zeros: int
    size: int


def is_quantized(model: OnnxModel | onnx.ModelProto) -> bool:
    """The main graph has a DequantizeLinear node."""
    proto = model.proto if isinstance(model, OnnxModel) else model
    return any(n.op_type == _DQ and n.domain in _DOMAINS for n in proto.graph.node)


def _dequantize(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, QuantizedWeight] | None:
    """The float value and record of a DequantizeLinear of constants; None when it reads a runtime value."""
    names = list(node.input) + [""] * (3 - len(node.input))
    if names[0] not in inits or names[1] not in inits or (names[2] and names[2] not in inits):
        return None
    if any(a.name == "block_size" and a.i for a in node.attribute):
        return None  # blocked quantization (opset 21): scales per block, not judged here
    q = tensor_to_array(inits[names[0]])
    if not np.issubdtype(q.dtype, np.integer):
        return None
    scale = tensor_to_array(inits[names[1]]).astype(np.float64)
    zp = tensor_to_array(inits[names[2]]).astype(np.int64) if names[2] else np.zeros_like(scale, dtype=np.int64)
    axis: int | None = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and q.ndim and scale.size == q.shape[axis % q.ndim]:  # per channel along axis
        axis = axis % q.ndim
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    else:
        axis = None
    integer = q.astype(np.int64) - zp
    value = (integer * scale).astype(np.float32)
    record = QuantizedWeight(
        value=node.output[0], tensor=names[0], dtype=str(q.dtype), axis=axis,
        zero_point_zero=bool(np.all(zp == 0)), zeros=int(np.count_nonzero(integer == 0)), size=int(q.size),
    )
    return value, record


def dequantized_view(model: OnnxModel) -> tuple[OnnxModel, dict[str, QuantizedWeight]]:
    """A float copy of a QDQ model for checking, and the quantized weights by view initializer name.

    A model without DequantizeLinear nodes comes back as it is, with an empty mapping.
    """
    if not is_quantized(model):
        return model, {}
    proto = copy_proto(model.proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    weights: dict[str, QuantizedWeight] = {}
    rename: dict[str, str] = {}
    drop: set[int] = set()
    new_inits: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != _DQ or node.domain not in _DOMAINS:
            continue
        found = _dequantize(node, inits)
        if found is not None:
            value, record = found
            new_inits.append(numpy_helper.from_array(value, node.output[0]))
            weights[record.value] = record
            drop.add(id(node))
            continue
        before = producers.get(node.input[0])
        if before is not None and before.op_type == _Q and before.domain in _DOMAINS:
            rename[node.output[0]] = before.input[0]  # a fake-quantized activation: read the float value
            drop.add(id(node))

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    kept = [n for n in graph.node if id(n) not in drop]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    read = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    kept = [n for n in kept if not (n.op_type == _Q and n.domain in _DOMAINS and n.output[0] not in read)]
    for out in graph.output:
        if out.name in rename:
            kept.append(helper.make_node("Identity", [resolve(out.name)], [out.name], name=f"{out.name}_view"))
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    initializers = [t for t in graph.initializer if t.name in used] + new_inits
    nodes = [onnx.NodeProto() for _ in kept]
    for copy, node in zip(nodes, kept):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.value_info[:]  # the bypassed pairs leave stale entries; the analysis infers shapes anyway
    view = normalize(proto, model.path)
    return view, weights
