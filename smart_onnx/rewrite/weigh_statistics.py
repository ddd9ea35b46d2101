"""The masked model of a channel mask that reaches a LayerNorm, written in ONNX for the rewrite check.

Channel mode may remove channels a LayerNorm normalises over (the hidden dimension of a transformer).
The pruned LayerNorm takes its mean and variance over the kept channels; the masked model the search
trains does the same, by weighting its means (``channel_weights`` in the executor). Zeros in the
weights alone do not say that to onnxruntime: the original graph would still divide by every channel.
So the masked original the rewrite is checked against gets the weighting written in, in the op order
the executor uses:

* a ``ReduceMean`` over the channels reads ``Mul(x, w)``;
* a fused ``LayerNormalization`` becomes ``mean = ReduceMean(x * w)``, ``d = x - mean``,
  ``d / Sqrt(ReduceMean(d * d * w) + epsilon) * scale + bias``;
* a com.microsoft ``SkipLayerNormalization`` becomes ``x = input + skip (+ bias)`` (its sum output, where the graph
  reads it) and that LayerNorm of ``x`` with ``gamma`` and ``beta``;
* a com.microsoft ``EmbedLayerNormalization`` stays for its lookups, its mask index and its sum (output 2, added
  where the graph does not read it), and that LayerNorm of the sum writes its output 0.

``w`` is mean 1 over the channel axis (``m * n / sum(m)`` for a 0/1 mask ``m``). This model is only
run, never written: it is a second graph for the same function, not a rewrite of the user's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from smart_onnx.errors import RewriteError
from smart_onnx.model import OnnxModel
from smart_onnx.rewrite._util import all_names, unique_name

__all__ = ["weigh_statistics"]


def weigh_statistics(model: OnnxModel, weights: Mapping[str, np.ndarray]) -> OnnxModel:
    """A copy of ``model`` whose nodes named in ``weights`` take their means weighted (see the module docstring).

    Args:
        model: the masked original (trained weights, mask written in as zeros).
        weights: node name -> weights broadcastable to the value it normalises (its input 0; an
            EmbedLayerNormalization's sum), mean 1 over the channel axis.

    Raises:
        RewriteError: a named node is not a ReduceMean or a (Skip/Embed) LayerNormalization of the main
            graph, or a LayerNorm named there returns its mean or inverse standard deviation.
    """
    if not weights:
        return model
    out = model.copy()
    graph = out.graph
    taken = all_names(graph)
    opset = out.opset
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        w = weights.get(node.name)
        if w is None:
            nodes.append(node)
            continue
        w_name = unique_name(f"{node.name}_channel_weights", taken)
        graph.initializer.append(numpy_helper.from_array(np.asarray(w, dtype=np.float32), w_name))
        if node.op_type == "ReduceMean":
            weighed = unique_name(f"{node.input[0]}_weighed", taken)
            nodes.append(helper.make_node("Mul", [node.input[0], w_name], [weighed],
                                          name=unique_name(f"{node.name}_weigh", taken)))
            node.input[0] = weighed
            nodes.append(node)
        elif node.op_type in ("LayerNormalization", "SkipLayerNormalization"):
            if any(node.output[1:3]):  # the channel analysis freezes such a LayerNorm's channels
                raise RewriteError(f"node {node.name!r} ({node.op_type}) returns its mean or inverse standard "
                                   "deviation, which its weighed form does not compute")
            nodes.extend(_layernorm(node, w_name, graph, taken, opset))
        elif node.op_type == "EmbedLayerNormalization":
            nodes.extend(_embed_layernorm(node, w_name, graph, taken, opset))
        else:
            raise RewriteError(f"node {node.name!r} ({node.op_type}) takes no mean over channels to weigh")
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def _embed_layernorm(node: onnx.NodeProto, w: str, graph: onnx.GraphProto, taken: set[str],
                     opset: int) -> list[onnx.NodeProto]:
    """The node computing its lookups, mask index and sum only (output 0 renamed to a value nothing reads), then the
    weighed LayerNorm of the sum with ``gamma`` and ``beta`` (inputs 5, 6) writing the node's output 0."""
    lookups = onnx.NodeProto()
    lookups.CopyFrom(node)
    outputs = list(node.output) + [""] * (3 - len(node.output))
    outputs[0] = unique_name(f"{node.name}_unweighed", taken)
    outputs[2] = outputs[2] or unique_name(f"{node.name}_sum", taken)
    del lookups.output[:]
    lookups.output.extend(outputs)
    return [lookups, *_layernorm(node, w, graph, taken, opset, x=outputs[2], scale=node.input[5],
                                 bias=_optional(node, 6))]


def _layernorm(node: onnx.NodeProto, w: str, graph: onnx.GraphProto, taken: set[str], opset: int,
               x: str | None = None, scale: str | None = None, bias: str | None = None) -> list[onnx.NodeProto]:
    """The weighed LayerNorm of ``x`` (default: the node's normalised input) with ``scale`` and ``bias`` (default:
    the node's) writing the node's output 0.

    LayerNormalization: x, scale, bias. SkipLayerNormalization: input, skip, gamma, beta, bias (added to the sum)."""
    skip = node.op_type == "SkipLayerNormalization"
    fused = node.op_type != "LayerNormalization"
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12 if fused else 1e-5)  # the specs' defaults
    if x is None:
        x, scale = node.input[0], node.input[2 if skip else 1]
        bias = _optional(node, 3 if skip else 2)
    base = node.name

    def value(suffix: str) -> str:
        return unique_name(f"{base}_{suffix}", taken)

    def const(suffix: str, array: np.ndarray) -> str:
        name = value(suffix)
        graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def op(op_type: str, inputs: list[str], output: str | None = None, **attrs: object) -> onnx.NodeProto:
        return helper.make_node(op_type, inputs, [output or value(op_type.lower())], name=value(op_type), **attrs)

    def mean(v: str) -> onnx.NodeProto:  # over the last axis, kept
        if opset >= 18:
            return op("ReduceMean", [v, const("axes", np.array([-1], np.int64))], keepdims=1)
        return op("ReduceMean", [v], axes=[-1], keepdims=1)

    steps = []
    if skip:  # the sum, in the executor's order: input + skip, then + bias; the node's output 3 where it has one
        total, added = _optional(node, 3, outputs=True), _optional(node, 4)
        steps.append(op("Add", [x, node.input[1]], None if added else total))
        if added:
            steps.append(op("Add", [steps[-1].output[0], added], total))
        x = steps[-1].output[0]
    steps.append(op("Mul", [x, w]))
    steps.append(mean(steps[-1].output[0]))
    d = op("Sub", [x, steps[-1].output[0]])
    steps += [d, op("Mul", [d.output[0], d.output[0]])]
    steps.append(op("Mul", [steps[-1].output[0], w]))
    steps.append(mean(steps[-1].output[0]))
    steps.append(op("Add", [steps[-1].output[0], const("epsilon", np.array(eps, np.float32))]))
    steps.append(op("Sqrt", [steps[-1].output[0]]))
    steps.append(op("Div", [d.output[0], steps[-1].output[0]]))
    steps.append(op("Mul", [steps[-1].output[0], scale], None if bias else node.output[0]))
    if bias:
        steps.append(op("Add", [steps[-1].output[0], bias], node.output[0]))
    return steps


def _optional(node: onnx.NodeProto, index: int, outputs: bool = False) -> str | None:
    """Input (or output) ``index`` of ``node``, None where it is absent or empty."""
    names = node.output if outputs else node.input
    return names[index] if len(names) > index and names[index] else None
