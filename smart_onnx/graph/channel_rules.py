"""Per-op channel rules for elementwise ops, norms, pooling and activations, and the dispatch.

A rule reads the :class:`~smart_onnx.graph.coupling.Layout` of a node's inputs, sets its
outputs' layouts, ties positions, and records slices and edits on the
:class:`~smart_onnx.graph.coupling.Tracer`. An op without a rule that reads channels
freezes them. Layers are in :mod:`~smart_onnx.graph.layer_rules`; rules that move or
re-arrange the channel axis in :mod:`~smart_onnx.graph.shape_rules` and
:mod:`~smart_onnx.graph.concat_rules`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import onnx

from smart_onnx.graph import layer_rules, shape_rules
from smart_onnx.graph.coupling import Layout, Tracer, embedding_table, merge_operands
from smart_onnx.graph.groups import Role
from smart_onnx.graph.head_rules import multihead_attention
from smart_onnx.graph.shape_rules import statistics
from smart_onnx.graph.view import attr

__all__ = ["RULES", "apply_rule"]

log = logging.getLogger(__name__)

Rule = Callable[[Tracer, onnx.NodeProto], None]

# Ops that leave every position of the channel axis where it is and mix nothing across it.
_UNARY = (
    "Abs", "Acos", "Asin", "Atan", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Dropout", "Elu",
    "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log",
    "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh",
    "Softplus", "Softsign", "Sqrt", "Swish", "Tan", "Tanh", "ThresholdedRelu",
)
_ELEMENTWISE = (
    "Add", "And", "BitwiseAnd", "BitwiseOr", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
    "Max", "Mean", "Min", "Mod", "Mul", "Or", "Pow", "Sub", "Sum", "Where", "Xor",
)
# Their per-channel constant operands are scales and offsets, which a removed channel may lose with it (zero).
_AFFINE = ("Add", "Sub", "Mul", "BiasGelu", "FastGelu")
# Ops over the spatial dims of NCHW tensors (channel axis 1).
_POOLS = ("AveragePool", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "LpPool", "MaxPool")
# Ops that may touch any axis: followed while the channel axis keeps its size.
_RESIZING = ("Pad", "Resize", "Upsample")
_SHAPE_ONLY = ("Shape", "Size")


def apply_rule(t: Tracer, node: onnx.NodeProto) -> None:
    """Propagate channels through ``node`` (freezing what its rule cannot follow)."""
    if node.domain not in ("", "ai.onnx"):
        rule = MS_RULES.get(node.op_type) if node.domain == "com.microsoft" else None
        if rule is None:
            t.freeze_inputs(node, f"of domain {node.domain!r} is not understood by the channel analysis")
            return
    else:
        rule = RULES.get(node.op_type)
    if rule is not None:
        try:
            rule(t, node)
        except (IndexError, KeyError, TypeError, ValueError) as e:  # malformed attributes or inputs
            log.warning("channel rule for node %r (%s) failed: %s", node.name, node.op_type, e)
            t.freeze_inputs(node, f"has inputs or attributes the channel analysis cannot read ({e})")
    elif t.input_layouts(node):
        t.freeze_inputs(node, "is not understood by the channel analysis")


def _unary(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.data_layout(node, "bounds or ratio")  # Clip, Dropout: scalars in any sane model
    if lay is not None:
        t.set_layout(node.output[0], lay, node)


def _spatial(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    out = t.shape(node.output[0])
    if lay.axis != 1 and (node.op_type in _POOLS or out is None):
        t.freeze_inputs(node, f"works on NCHW tensors but the channels are on axis {lay.axis}")
        return
    if out is not None and out[lay.axis] != len(lay.owners):
        t.freeze_inputs(node, f"changes the channel axis from {len(lay.owners)} to {out[lay.axis]}")
        return
    t.set_layout(node.output[0], lay, node)


def _shape_only(t: Tracer, node: onnx.NodeProto) -> None:
    """Shape/Size read dims only; where a channel count read this way ends up is checked
    afterwards (:func:`~smart_onnx.graph.shape_trace.freeze_unsafe_shape_reads`)."""


def _elementwise(t: Tracer, node: onnx.NodeProto) -> None:
    if not t.input_layouts(node):
        return
    rank = t.rank(node.output[0])
    if rank is None:
        ranks = [t.rank(v) for v in node.input if v]
        rank = None if None in ranks or not ranks else max(ranks)
    role = (Role.PRELU_SLOPE if node.op_type == "PRelu" else
            Role.AFFINE_CONST if node.op_type in _AFFINE else Role.ELEMENTWISE_CONST)
    lay = merge_operands(t, node, list(range(len(node.input))), rank, role)
    if lay is not None:
        t.set_layout(node.output[0], lay, node)


def _norm(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.data_layout(node, "parameters")
    if lay is not None:
        _normalise(t, node, lay, params=range(1, len(node.input)))


def _skip_layernorm(t: Tracer, node: onnx.NodeProto) -> None:
    """com.microsoft SkipLayerNormalization: the residual ``Add`` of input and skip (and ``bias``, a per-channel offset,
    input 4), then a LayerNorm over the last axis with ``gamma`` and ``beta`` (inputs 2, 3): the two rules it fuses.
    Its sum output (``input_skip_bias_sum``, 3) carries the stream on, as a pre-LN model's residual."""
    if any(i in (2, 3) for i, _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its gamma or beta")
        return
    rank = t.rank(node.output[0]) or t.rank(node.input[0])
    lay = merge_operands(t, node, [0, 1, 4], rank, Role.AFFINE_CONST)
    if lay is None:
        return
    if len(node.output) > 3:
        t.set_layout(node.output[3], lay, node)
    _normalise(t, node, lay, params=(2, 3))


def _embed_layernorm(t: Tracer, node: onnx.NodeProto) -> None:
    """com.microsoft EmbedLayerNormalization: the word, position and segment tables (inputs 2, 3, 4) read along their
    rows and summed, the columns of all three a new space as an embedding ``Gather``'s are; then a LayerNorm over the
    last axis with ``gamma`` and ``beta`` (inputs 5, 6). The sum (output 2) carries the channels too; the mask index
    (output 1) carries none."""
    if any(True for _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its ids, tables or parameters")
        return
    lay = embedding_table(t, node, index=2)
    if lay is None:  # no constant word table: nothing to trace, and the readers of its outputs freeze
        return
    for i in (3, 4):
        value = node.input[i] if i < len(node.input) else ""
        source = t.initializer_behind(value) if value else None
        shape = t.shape(source) if source is not None else None
        if value and (shape is None or len(shape) != 2 or shape[1] != len(lay.owners)):
            t.freeze(lay.owners, f"node {node.name!r} (EmbedLayerNormalization) reads table {value!r}, whose "
                                 "columns the analysis cannot tie to the word table's")
        elif value:
            t.add_slice(source, 1, lay.owners, Role.EMBEDDING, node)
    rank = t.rank(node.output[0]) or 3
    lay = Layout(rank - 1, rank, lay.owners)
    if len(node.output) > 2 and node.output[2]:
        t.set_layout(node.output[2], lay, node)
    # Its input 0 holds the ids; the mean runs over the sum, which has the normalised output's shape.
    _normalise(t, node, lay, params=(5, 6), normalised=node.output[0])


# Normalisations over the trailing axes, whose scale and bias broadcast against them (their last axis).
_LAYER_NORMS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization")


def _normalise(t: Tracer, node: onnx.NodeProto, lay: Layout, params: Iterable[int],
               normalised: str | None = None) -> None:
    """Output 0 of a normalisation of ``lay``: per channel on axis 1 (BatchNorm, InstanceNorm), or over the trailing
    axes (the LayerNorms), whose mean and variance are then taken over the kept channels; parameters ``params``
    (constant inputs) are sliced with the channels. ``normalised``: the value normalised, where not input 0."""
    role = Role.NORM_PARAM
    if node.op_type in _LAYER_NORMS:
        first = int(attr(node, "axis", -1)) % lay.rank  # SkipLayerNormalization has no axis: the last
        if lay.axis < first:  # channels are not among the normalised axes
            t.set_layout(node.output[0], lay, node)
            return
        if not statistics(t, node, lay, list(range(first, lay.rank)), normalised):
            t.set_layout(node.output[0], lay, node)  # frozen: what it normalises goes on as one group, for this reason
            return
        role = Role.AFFINE_CONST
    elif lay.axis != 1:
        t.freeze_inputs(node, f"normalises per channel on axis 1 but the channels are on axis {lay.axis}")
        return
    for i in params:
        value = node.input[i] if i < len(node.input) else ""
        if not value:
            continue
        source = t.initializer_behind(value)
        if source is None:
            t.freeze_inputs(node, f"reads parameter {value!r}, which is not a constant")
            return
        shape = t.shape(source)
        # BatchNorm/InstanceNorm params are [C]; a LayerNorm's broadcast against the normalised (channel) axis.
        k = len(shape) - 1 if node.op_type in _LAYER_NORMS else 0
        if 0 <= k < len(shape) and shape[k] > 1:
            t.add_slice(source, k, lay.owners, role, node)
    t.set_layout(node.output[0], lay, node)


def _softmax(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    opset = t.view.model.opset
    axis = int(attr(node, "axis", -1 if opset >= 13 else 1)) % lay.rank
    if lay.axis == axis or (opset < 13 and lay.axis > axis):
        t.freeze_inputs(node, f"normalises over axis {axis}, which carries the channels")
        return
    t.set_layout(node.output[0], lay, node)


RULES: dict[str, Rule] = {
    **{op: _unary for op in _UNARY},
    **{op: _elementwise for op in (*_ELEMENTWISE, "PRelu")},
    **{op: _spatial for op in (*_POOLS, *_RESIZING)},
    **{op: _shape_only for op in _SHAPE_ONLY},
    **{op: _norm for op in ("BatchNormalization", "InstanceNormalization", "LayerNormalization")},
    **{op: _softmax for op in ("Softmax", "LogSoftmax", "Hardmax")},
    **shape_rules.RULES,
    **layer_rules.RULES,
}
# com.microsoft ops of onnxruntime's transformer optimizer: a GELU of the input plus a per-channel bias passes
# channels through (the bias sliced as Add's is); Attention's and MultiHeadAttention's heads are channels
# (graph/layer_rules.py, graph/head_rules.py); SkipLayerNormalization is a residual Add and a LayerNorm;
# EmbedLayerNormalization embedding lookups, their sum and a LayerNorm.
MS_RULES: dict[str, Rule] = {"BiasGelu": _elementwise, "FastGelu": _elementwise,
                             "Attention": layer_rules.fused_attention, "MultiHeadAttention": multihead_attention,
                             "SkipLayerNormalization": _skip_layernorm, "EmbedLayerNormalization": _embed_layernorm}
