"""Prunable layers: Conv, ConvTranspose, Gemm and MatMul nodes whose weight is a constant, and
onnxruntime's fused com.microsoft ``Attention`` (its packed ``[in, q + k + v]`` projection, laid out as a
MatMul's weight; the attention itself has no weight).

Supported weight sources (main graph only): a floating-point initializer read directly,
or through any chain of ``Identity`` and ``Transpose`` nodes (a ``Transpose`` needs its
``perm`` attribute; a missing ``perm`` reverses the axes as ONNX says). Constant nodes
count as initializers because the loader lifts them. A weight computed any other way
(``DequantizeLinear``, ``Reshape``, a runtime input) makes the node not prunable.

All axes in :class:`PrunableLayer` are axes of the *initializer* (what the rewriter
slices and the search masks), not of the value the node reads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from smart_onnx.graph.view import GraphView, attr
from smart_onnx.model import OnnxModel, is_float_tensor

__all__ = ["PRUNABLE_CONTRIB_OPS", "PRUNABLE_OPS", "PrunableLayer", "find_prunable_layers"]

log = logging.getLogger(__name__)

PRUNABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# onnxruntime's fused ops with a constant weight of their own: Attention's packed [in, q + k + v] projection.
PRUNABLE_CONTRIB_OPS = ("Attention",)


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable node and the layout of its weight.

    Attributes:
        name: node name (unique: the loader names every node).
        op_type: ``Conv``, ``ConvTranspose``, ``Gemm`` or ``MatMul``.
        weight: name of the weight *initializer*.
        weight_input: name of the value the node reads as its weight; equal to ``weight``
            unless the weight goes through ``Identity``/``Transpose`` nodes.
        bias: name of a 1-D bias initializer of length ``out_channels`` (Conv/ConvTranspose
            input 2, Gemm ``C`` of shape ``[N]``), else None. A MatMul's bias is a separate
            ``Add``; a Gemm ``C`` of another shape is not a bias here (coupling treats both
            as elementwise constants).
        weight_shape: shape of the weight initializer.
        out_axis: initializer axis that holds output channels (Conv 0, ConvTranspose 1,
            Gemm transB=1 0, Gemm transB=0 1, MatMul rank-2 ``[I, O]`` 1), before any
            ``Transpose`` on the weight path is undone.
        in_axis: initializer axis that holds input channels (Conv 1, ConvTranspose 0,
            Gemm transB=1 1, Gemm transB=0 0, MatMul 0).
        kernel_axes: initializer axes of the kernel dims, in spatial order (empty for Gemm/MatMul).
        groups: the conv ``group`` attribute (1 for Gemm/MatMul).
        params: weight elements plus bias elements.
        macs: multiply-accumulates per sample at the analysed input shape
            (Conv: ``out spatial * O * I/g * prod(k)``; ConvTranspose: ``in spatial * I * O/g * prod(k)``;
            Gemm/MatMul: ``out elements per sample * I``), None when the needed shape is unknown.
    """

    name: str
    op_type: str
    weight: str
    weight_input: str
    bias: str | None
    weight_shape: tuple[int, ...]
    out_axis: int
    in_axis: int
    kernel_axes: tuple[int, ...]
    groups: int
    params: int
    macs: int | None

    @property
    def canonical_axes(self) -> tuple[int, ...]:
        """Permutation from canonical ``O x I x k...`` order to the initializer's axes.

        ``np.transpose(W, layer.canonical_axes)`` is the weight as ``[O_w, I_w, *kernel]``,
        where ``O_w``/``I_w`` are the sizes of ``out_axis``/``in_axis`` (per group for grouped
        convs). ``np.transpose(canonical, layer.tensor_axes)`` goes back.
        """
        return (self.out_axis, self.in_axis, *self.kernel_axes)

    @property
    def tensor_axes(self) -> tuple[int, ...]:
        """Inverse of :attr:`canonical_axes`: canonical order back to the initializer's axes."""
        return tuple(int(i) for i in np.argsort(self.canonical_axes))

    @property
    def canonical_shape(self) -> tuple[int, ...]:
        """Weight shape in canonical ``O x I x k...`` order (2-D for Gemm/MatMul)."""
        return tuple(self.weight_shape[a] for a in self.canonical_axes)

    @property
    def out_channels(self) -> int:
        """Output channels of the layer (ConvTranspose: ``O/g`` on the weight axis times ``g``)."""
        n = self.weight_shape[self.out_axis]
        return n * self.groups if self.op_type == "ConvTranspose" else n

    @property
    def in_channels(self) -> int:
        """Input channels of the layer (Conv: ``I/g`` on the weight axis times ``g``)."""
        n = self.weight_shape[self.in_axis]
        return n * self.groups if self.op_type == "Conv" else n

    @property
    def is_depthwise(self) -> bool:
        """A conv with one input channel per group (``group == in_channels``)."""
        return self.op_type == "Conv" and self.groups > 1 and self.weight_shape[self.in_axis] == 1

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "op_type": self.op_type, "weight": self.weight, "bias": self.bias,
            "weight_shape": list(self.weight_shape), "out_axis": self.out_axis, "in_axis": self.in_axis,
            "groups": self.groups, "out_channels": self.out_channels, "in_channels": self.in_channels,
            "params": self.params, "macs": self.macs,
        }


def find_prunable_layers(
    model: OnnxModel | GraphView, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> list[PrunableLayer]:
    """Every prunable node of the main graph, in graph order.

    Args:
        model: the model (or a view of it).
        shapes: value shapes (from :func:`smart_onnx.graph.view.value_shapes`); used for MACs only.

    Returns:
        One :class:`PrunableLayer` per Conv/ConvTranspose/Gemm/MatMul whose weight is a
        floating-point constant (see the module docstring for what counts).
    """
    view = model if isinstance(model, GraphView) else GraphView(model)
    shapes = shapes or {}
    layers = []
    for node in view.nodes:
        if (node.op_type in PRUNABLE_OPS and node.domain in ("", "ai.onnx")) or (
                node.op_type in PRUNABLE_CONTRIB_OPS and node.domain == "com.microsoft"):
            layer = _layer(view, node, shapes)
            if layer is not None:
                layers.append(layer)
    return layers


def weight_source(view: GraphView, value: str) -> tuple[str, tuple[int, ...]] | None:
    """The initializer behind ``value`` through Identity/Transpose nodes, and the axis map.

    Returns:
        ``(initializer, perm)`` where axis ``j`` of ``value`` is axis ``perm[j]`` of the
        initializer, or None when ``value`` is not such a constant.
    """
    perm: tuple[int, ...] | None = None
    while value not in view.initializers:
        node = view.producer(value)
        if node is None or node.op_type not in ("Identity", "Transpose"):
            return None
        if node.op_type == "Transpose":
            rank = len(view.shape_of_constant(node.input[0]) or ())
            p = tuple(attr(node, "perm", list(reversed(range(rank)))) or ())
            perm = p if perm is None else tuple(p[i] for i in perm)
        value = node.input[0]
    tensor = view.initializers[value]
    if not is_float_tensor(tensor):
        return None
    rank = len(tensor.dims)
    return value, (perm if perm is not None else tuple(range(rank)))


def _layer(view: GraphView, node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> PrunableLayer | None:
    if len(node.input) < 2:
        return None
    src = weight_source(view, node.input[1])
    if src is None:
        return None
    weight, perm = src
    shape = tuple(int(d) for d in view.initializers[weight].dims)
    view_axes = _view_layout(node, len(shape))
    if view_axes is None:
        return None
    out_v, in_v, kernel_v = view_axes
    groups = int(attr(node, "group", 1)) if node.op_type.startswith("Conv") else 1
    bias = _bias(view, node, shape[perm[out_v]] * (groups if node.op_type == "ConvTranspose" else 1))
    params = int(np.prod(shape)) + (int(np.prod(view.initializers[bias].dims)) if bias else 0)
    layer = PrunableLayer(
        name=node.name, op_type=node.op_type, weight=weight, weight_input=node.input[1], bias=bias,
        weight_shape=shape, out_axis=perm[out_v], in_axis=perm[in_v],
        kernel_axes=tuple(perm[a] for a in kernel_v), groups=groups, params=params, macs=None,
    )
    return _with_macs(layer, node, shapes)


def _view_layout(node: onnx.NodeProto, rank: int) -> tuple[int, int, tuple[int, ...]] | None:
    """(out axis, in axis, kernel axes) of the weight *as the node reads it*."""
    if node.op_type == "Conv" and rank >= 3:
        return 0, 1, tuple(range(2, rank))
    if node.op_type == "ConvTranspose" and rank >= 3:
        return 1, 0, tuple(range(2, rank))
    if node.op_type == "Gemm" and rank == 2:
        return (0, 1, ()) if attr(node, "transB", 0) else (1, 0, ())
    if node.op_type in ("MatMul", "Attention") and rank == 2:
        return 1, 0, ()
    return None  # batched MatMul weights ([h, I, O]) and malformed convs are not prunable


def _bias(view: GraphView, node: onnx.NodeProto, out_channels: int) -> str | None:
    if node.op_type == "MatMul" or len(node.input) < 3 or not node.input[2]:
        return None
    name = node.input[2]
    tensor = view.initializers.get(name)
    if tensor is None or list(tensor.dims) != [out_channels]:
        return None
    return name


def _with_macs(layer: PrunableLayer, node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> PrunableLayer:
    kernel = int(np.prod([layer.weight_shape[a] for a in layer.kernel_axes], dtype=np.int64))
    if layer.op_type == "ConvTranspose":
        known = shapes.get(node.input[0])  # each input element meets O/g * k weights
        per_element = layer.weight_shape[layer.out_axis] * kernel
    else:
        known = shapes.get(node.output[0])  # each output element sums I/g * k products
        per_element = layer.weight_shape[layer.in_axis] * kernel
    if known is None:
        return layer
    per_sample = known[1:] if len(known) >= 2 else known
    if layer.op_type == "Attention":  # the packed projection: every token meets all q + k + v columns
        per_sample = (*per_sample[:-1], layer.weight_shape[layer.out_axis])
    macs = int(np.prod(per_sample, dtype=np.int64)) * per_element
    return PrunableLayer(**{**layer.__dict__, "macs": macs})
