"""Channel rules for Conv, ConvTranspose, Gemm and MatMul.

A prunable layer *consumes* the channels of its data input (its weight's input axis is
sliced with them) and *roots* a new group: its output channels (weight output axis,
bias, a Gemm ``C`` with a channel dim). A depthwise conv (``group == in_channels``, one
output per input channel) roots nothing: its weight's output axis, bias and ``group``
count follow its input channels. Other grouped convs and depthwise convs with a channel
multiplier freeze both sides. The same ops without a constant weight freeze what they read.
"""

from __future__ import annotations

import numpy as np
import onnx

from smart_onnx.graph.coupling import Layout, Tracer
from smart_onnx.graph.groups import Role
from smart_onnx.graph.head_rules import batched_matmul
from smart_onnx.graph.layers import PrunableLayer
from smart_onnx.graph.view import attr

__all__ = ["RULES", "fused_attention"]


def _layer(t: Tracer, node: onnx.NodeProto) -> None:
    layer = t.layers.get(node.name)
    if layer is None and node.op_type == "MatMul":
        batched_matmul(t, node)  # Q @ K^T, P @ V: heads on a batch axis
        return
    if layer is None:
        if t.input_layouts(node):
            t.freeze_inputs(node, "has no constant weight (it multiplies runtime tensors), "
                                  "so the channels it reads cannot be traced")
        return
    lay = t.layout(node.input[0])
    if any(i == 1 for i, _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its weight")
        lay = None
    if layer.is_depthwise and lay is not None:
        _depthwise(t, node, layer, lay)
        return
    frozen = _grouped_reason(layer, lay)
    if frozen is not None and lay is not None:
        t.freeze(lay.owners, frozen)
    elif lay is not None:
        _consume(t, node, layer, lay)
    owners = t.new_space(layer.out_channels, layer=layer.name, frozen=frozen)
    if layer.weight_shape[layer.out_axis] == len(owners):  # a grouped ConvTranspose holds O/g there (frozen)
        t.add_slice(layer.weight, layer.out_axis, owners, Role.PRODUCER_WEIGHT, node)
    if layer.bias is not None:
        t.add_slice(layer.bias, 0, owners, Role.PRODUCER_BIAS, node)
    rank = t.rank(node.output[0]) or (lay.rank if lay is not None else None) or t.rank(node.input[0])
    if rank is None:
        t.freeze(owners, f"node {node.name!r} ({node.op_type}) has an output of unknown rank")
        return
    if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] and node.input[2] != layer.bias:
        _gemm_c(t, node, owners)
    axis = rank - 1 if node.op_type in ("Gemm", "MatMul") else 1
    t.set_layout(node.output[0], Layout(axis, rank, owners), node)


def _grouped_reason(layer: PrunableLayer, lay: Layout | None) -> str | None:
    where = f"node {layer.name!r} ({layer.op_type}, group={layer.groups})"
    if layer.is_depthwise:
        if lay is None:
            return f"{where} is depthwise, so its channels follow its input, which the analysis cannot trace"
        return None
    if layer.groups > 1:
        return f"{where} ties channels in blocks; only depthwise convs (group == input channels) are supported"
    return None


def _consume(t: Tracer, node: onnx.NodeProto, layer: PrunableLayer, lay: Layout) -> None:
    if node.op_type == "Gemm":
        expected = 0 if attr(node, "transA", 0) else 1
    elif node.op_type in ("MatMul", "Attention"):
        expected = lay.rank - 1
    else:
        expected = 1
    size = layer.weight_shape[layer.in_axis]
    if lay.axis != expected:
        t.freeze(lay.owners, f"node {node.name!r} ({node.op_type}) reads the channels on axis {lay.axis}, "
                             f"not on its input-channel axis {expected}")
    elif len(lay.owners) != size:
        t.freeze(lay.owners, f"node {node.name!r} ({node.op_type}) has {size} input channels on its weight but "
                             f"its input carries {len(lay.owners)} positions")
    else:
        t.add_slice(layer.weight, layer.in_axis, lay.owners, Role.CONSUMER_WEIGHT, node)


def _depthwise(t: Tracer, node: onnx.NodeProto, layer: PrunableLayer, lay: Layout) -> None:
    multiplier = layer.weight_shape[layer.out_axis] // layer.groups
    if lay.axis != 1 or len(lay.owners) != layer.groups or multiplier != 1:
        reason = (f"node {node.name!r} (Conv, group={layer.groups}) is depthwise with {multiplier} outputs per "
                  f"input channel; only one output per channel can follow its input channels")
        t.freeze(lay.owners, reason)
        owners = t.new_space(layer.out_channels, layer=layer.name, frozen=reason)
        t.add_slice(layer.weight, layer.out_axis, owners, Role.PRODUCER_WEIGHT, node)
        t.set_layout(node.output[0], Layout(1, lay.rank, owners), node)
        return
    t.add_slice(layer.weight, layer.out_axis, lay.owners, Role.DEPTHWISE_WEIGHT, node)
    if layer.bias is not None:
        t.add_slice(layer.bias, 0, lay.owners, Role.DEPTHWISE_BIAS, node)
    t.add_edit(node, "group", 0, layer.groups, lay.owners)
    t.set_layout(node.output[0], lay, node)


def _gemm_c(t: Tracer, node: onnx.NodeProto, owners: np.ndarray) -> None:
    """A Gemm ``C`` that is not a plain bias: slice it where it has the output-channel dim."""
    value = node.input[2]
    shape = t.shape(value)
    k = None if shape is None else len(shape) - 1
    if shape is not None and (k < 0 or shape[k] == 1):
        return
    if shape is not None and value in t.view.initializers and shape[k] == len(owners):
        t.add_slice(value, k, owners, Role.ELEMENTWISE_CONST, node)
    else:
        t.freeze(owners, f"node {node.name!r} (Gemm) adds C={value!r}, which cannot be sliced with its outputs")


def fused_attention(t: Tracer, node: onnx.NodeProto) -> None:
    """com.microsoft Attention: its input is consumed like a MatMul's, its heads are the channels of a new group.

    Head ``h`` owns columns ``h*Dq..`` of the Q part of the packed ``[in, q + k + v]`` weight (and bias), ``h*Dk..``
    of K and ``h*Dv..`` of V, and positions ``h*Dv..`` of the output; ``num_heads`` drops by one per removed head,
    each ``qkv_hidden_sizes`` entry by that part's head size.
    """
    layer = t.layers.get(node.name)
    heads = int(attr(node, "num_heads", 0))
    sizes = [int(v) for v in attr(node, "qkv_hidden_sizes", None) or ()]
    if layer is None or heads < 1:
        t.freeze_inputs(node, "has no constant packed weight or no num_heads, so its heads cannot be traced")
        return
    lay = t.layout(node.input[0])
    if any(i > 0 for i, _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its weights, bias or mask")
        lay = None
    if lay is not None:
        _consume(t, node, layer, lay)
    width = layer.weight_shape[layer.out_axis]
    sizes = sizes or [width // 3] * 3
    if sum(sizes) != width or any(size % heads for size in sizes) or any(o for o in node.output[1:]):
        t.new_space(heads, layer=node.name, frozen=f"node {node.name!r} (Attention) has a packed weight, sizes or "
                                                   "outputs its heads cannot be read from")
        return
    owners = t.new_space(heads, layer=node.name)
    columns = np.concatenate([np.repeat(owners, size // heads) for size in sizes])
    t.add_slice(layer.weight, layer.out_axis, columns, Role.PRODUCER_WEIGHT, node)
    if layer.bias is not None:
        t.add_slice(layer.bias, 0, columns, Role.PRODUCER_BIAS, node)
    t.add_edit(node, "num_heads", 0, heads, owners)
    if attr(node, "qkv_hidden_sizes", None):
        for i, size in enumerate(sizes):
            t.add_edit(node, "qkv_hidden_sizes", i, size, np.repeat(owners, size // heads))
    rank = t.rank(node.output[0]) or 3
    t.set_layout(node.output[0], Layout(rank - 1, rank, np.repeat(owners, sizes[2] // heads)), node)


RULES = {op: _layer for op in ("Conv", "ConvTranspose", "Gemm", "MatMul")}
