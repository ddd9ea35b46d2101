"""Internal tensors worth matching between the pruned and the dense model (feature distillation).

With a few dozen calibration samples, matching only the outputs leaves the inside of the
network free to drift; matching a handful of internal tensors as well is the standard remedy.
The tensors chosen are where a network's stages meet: the outputs of residual ``Add`` nodes
(a ResNet/MobileNet block, a transformer sublayer) and the residual stream a com.microsoft
``SkipLayerNormalization`` writes (the residual Add fused with its LayerNorm), else, for plain
chains, the inputs of the prunable layers. At most ``limit`` of them, spread evenly along the graph.

Each is normalised per channel, and a channel is not always axis 1: a transformer's residual
stream is ``[batch, sequence, hidden]``, its channels the last axis, which the LayerNorm that
reads it normalises over (:func:`feature_axes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smart_onnx.graph.view import GraphView, attr
from smart_onnx.model import OnnxModel

__all__ = ["feature_axes", "feature_points"]

# Ops that normalise their input over one axis: that axis is the tensor's channel axis.
_NORMALISERS = {"LayerNormalization": ("axis", -1), "ReduceMean": ("axes", None)}
# com.microsoft SkipLayerNormalization normalises input + skip (inputs 0 and 1) over the last axis; its outputs are
# that stream (normalised, output 0, or as summed, output 3).
_SKIP_LAYERNORM = "SkipLayerNormalization"


def feature_axes(model: OnnxModel, names: Sequence[str]) -> dict[str, int]:
    """Each tensor's channel axis (possibly negative): the one axis a LayerNorm (fused, or decomposed as
    ReduceMean) reading it, or the sum it is added into (an embedding before the position embedding is
    added), normalises over; else 1 (``[batch, channels, ...]``)."""
    view = GraphView(model)
    return {name: _normalised_axis(view, name, hops=3) or 1 for name in names}


def _normalised_axis(view: GraphView, value: str, hops: int) -> int | None:
    producer = view.producer(value)
    if producer is not None and producer.op_type == _SKIP_LAYERNORM:
        return -1
    for node, slot in view.consumers(value):
        if node.op_type == "Add" and hops > 0:
            axis = _normalised_axis(view, node.output[0], hops - 1)
            if axis is not None:
                return axis
        if node.op_type == _SKIP_LAYERNORM and slot in (0, 1):
            return -1
        if node.op_type not in _NORMALISERS or slot != 0:
            continue
        key, default = _NORMALISERS[node.op_type]
        found = attr(node, key)
        if found is None and node.op_type == "ReduceMean" and len(node.input) > 1:
            found = view.constant(node.input[1])  # opset 18: the axes are an input
        axes = [default] if found is None else np.atleast_1d(found).tolist()
        if len(axes) == 1 and axes[0] is not None:
            return int(axes[0])
    return None


# Ops an exporter may put between attention scores and their Softmax (a mask applied with Where, heads merged or split
# by Reshape, a scale) without mixing positions: scores that pass only through them still feed the Softmax.
_SCORE_PASSTHROUGH = {"Add", "Cast", "Div", "Expand", "Identity", "Mul", "Reshape", "Squeeze", "Sub", "Transpose",
                      "Unsqueeze", "Where"}
_SCORE_HOPS = 3
_SOFTMAX = {"Softmax", "LogSoftmax"}


def _reaches_softmax(view: GraphView, value: str, hops: int) -> bool:
    """Whether a Softmax reads ``value``, directly or through at most ``hops`` ops of ``_SCORE_PASSTHROUGH``."""
    for node, _ in view.consumers(value):
        if node.op_type in _SOFTMAX:
            return True
        if hops > 0 and node.op_type in _SCORE_PASSTHROUGH and node.output and node.output[0] \
                and _reaches_softmax(view, node.output[0], hops - 1):
            return True
    return False


def _evenly(names: list[str], limit: int) -> list[str]:
    if len(names) <= limit:
        return names
    step = len(names) / limit
    return [names[int((i + 1) * step) - 1] for i in range(limit)]  # the last one is always taken


def feature_points(model: OnnxModel, layer_nodes: list[str], limit: int = 8) -> list[str]:
    """Names of up to ``limit`` float activations of the main graph to distill, in graph order.

    Args:
        model: the model.
        layer_nodes: names of the prunable layers' nodes (their inputs are the fallback points).
        limit: the most points returned (0: none).
    """
    if limit <= 0:
        return []
    view = GraphView(model)
    skip = set(view.outputs) | set(view.initializers) | set(view.inputs)
    merges = []
    for node in view.nodes:
        if node.op_type == _SKIP_LAYERNORM:  # the stream: the sum where the graph reads it (pre-LN), else normalised
            stream = node.output[3] if len(node.output) > 3 and node.output[3] else node.output[0]
            if stream not in skip:
                merges.append(stream)
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        # Both operands computed (not a bias or a constant): two branches meet here. Not attention scores plus
        # their mask or position bias, which a Softmax reads: the mask's -3.4e38 (or -1e4) entries make the scores'
        # variance, so their error weighs nothing, and MiniLM lost two of its six residual points to them.
        if (all(view.producer(i) is not None and i not in view.initializers for i in node.input)
                and not _reaches_softmax(view, node.output[0], _SCORE_HOPS)):
            merges.extend(o for o in node.output if o and o not in skip)
    if not merges:
        wanted = set(layer_nodes)
        seen: set[str] = set()
        for node in view.nodes:
            if node.name in wanted and node.input and node.input[0] not in skip and node.input[0] not in seen:
                seen.add(node.input[0])
                merges.append(node.input[0])
    return _evenly(merges, limit)
