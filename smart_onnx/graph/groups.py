"""Coupling-group records: what to slice, which shape constants to edit, what it costs.

A :class:`CouplingGroup` is a set of channels that must be removed together. Its
channels are numbered ``0 .. channels-1``; every tensor the removal touches has a
:class:`TensorSlice` saying on which axis, and where (an :class:`~smart_onnx.graph.index_map.IndexMap`
from group channel to positions on that axis). Integer shape data that changes with the
channel count (Split sizes, Slice bounds, Reshape targets, a depthwise conv's ``group``) is a
:class:`ShapeEdit`.

Several groups may slice the same tensor axis (the consumer of a ``Concat`` of two groups
reads both): each covers its own positions, so the positions to drop from a tensor axis are
the union of ``slice.index_map(removed channels of that slice's group)`` over all groups,
and a shape entry's new value is ``old_value`` minus the sum of the matching edits' deltas.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from smart_onnx.errors import ConstraintError
from smart_onnx.graph.index_map import IndexMap, as_indices

__all__ = ["CouplingGroup", "Role", "ShapeEdit", "TensorSlice", "check_keep"]


class Role(str, Enum):
    """Why a tensor is in a group."""

    PRODUCER_WEIGHT = "producer_weight"  # a root layer's weight, its out axis
    PRODUCER_BIAS = "producer_bias"  # a root layer's bias (axis 0)
    DEPTHWISE_WEIGHT = "depthwise_weight"  # a depthwise conv's weight out axis (its channels follow its input)
    DEPTHWISE_BIAS = "depthwise_bias"
    CONSUMER_WEIGHT = "consumer_weight"  # a layer reading the channels: its weight in axis
    NORM_PARAM = "norm_param"  # BatchNorm scale/B/mean/var, InstanceNorm scale/B
    PRELU_SLOPE = "prelu_slope"
    ELEMENTWISE_CONST = "elementwise_const"  # constant operand of Div/Pow/Where/.../Gemm C with a channel dim
    # A per-channel scale or offset: constant operand of Add/Sub/Mul, a LayerNormalization's scale and bias,
    # BiasGelu's bias. Masked with its channel (so a removed channel of a residual stream is zero, not a bias).
    AFFINE_CONST = "affine_const"
    EMBEDDING = "embedding"  # a table read by Gather/Slice along its rows: its columns are the channels
    ACTIVATION = "activation"  # a runtime value carrying the channels (not sliced by the rewriter)
    # A node's input whose channels it reduces (ReduceMean, LayerNormalization): the masked model takes the
    # mean and variance over the kept channels only, as the pruned model does (not sliced by the rewriter).
    STATISTICS = "statistics"

    @property
    def counts_weights(self) -> bool:
        """Whether the tensor's elements count in a channel's cost (an embedding table is not a prunable weight)."""
        return self not in (Role.ACTIVATION, Role.STATISTICS, Role.EMBEDDING)


@dataclass(frozen=True)
class TensorSlice:
    """One axis of one tensor that loses positions when group channels are removed.

    Attributes:
        tensor: initializer name (``constant=True``) or value name (``role == ACTIVATION``).
        axis: non-negative axis of ``tensor``.
        axis_size: length of that axis in the original model.
        index_map: group channel -> positions on ``axis``; positions outside its image
            belong to other groups or to no group and stay.
        role: why the tensor is in the group.
        node: the node that reads (or, for activations, writes) the tensor.
    """

    tensor: str
    axis: int
    axis_size: int
    index_map: IndexMap
    role: Role
    node: str

    @property
    def constant(self) -> bool:
        """True for initializers the rewriter slices; False for runtime values (activations, statistics inputs)."""
        return self.role not in (Role.ACTIVATION, Role.STATISTICS)

    def removed_positions(self, removed_channels: object) -> np.ndarray:
        """Sorted positions on ``axis`` that removing ``removed_channels`` (group indices) drops."""
        pos = self.index_map(removed_channels)
        return pos[(pos >= 0) & (pos < self.axis_size)]

    def per_channel_positions(self, channels: int) -> np.ndarray:
        """How many positions of this axis each group channel holds (length ``channels``)."""
        return self.index_map.counts(np.arange(channels))

    def to_dict(self) -> dict[str, object]:
        return {"tensor": self.tensor, "axis": self.axis, "axis_size": self.axis_size,
                "role": self.role.value, "node": self.node, "map": repr(self.index_map)}


@dataclass(frozen=True)
class ShapeEdit:
    """An integer in the graph that shrinks when group channels are removed.

    Exactly one of ``input_index`` / ``attribute`` is set:

    A ``per_channel`` of 0 is a *pin*: a one-entry piece of a Reshape target computed at run time from this
    group's channel count but fixed for every input (attention's head size ``d // heads``, ``d`` read from the
    residual stream); whenever the group loses channels, the rewriter writes the piece as the constant
    ``old_value``, which the computation would no longer give.

    * ``input_index``: entry ``position`` of the 1-D int64 constant at ``node.input[input_index]``
      (Split sizes = 1, Slice starts = 1 / ends = 2, Reshape shape = 1, or input ``k`` of a
      ``Concat`` that builds a Reshape target). A Split that has no sizes input (equal split,
      or ``num_outputs``) still gets ``input_index = 1``: the rewriter adds the input with
      the original sizes, then applies the edits. The constant may be shared by several nodes;
      the rewriter must give the edited node its own copy.
    * ``attribute``: entry ``position`` of the int/ints attribute (Split ``split`` before
      opset 13, Conv ``group``; 0 for a scalar attribute).

    Attributes:
        node: node name.
        op_type: its op type (for messages).
        input_index: see above.
        attribute: see above.
        position: entry within the tensor or attribute.
        old_value: the value in the original model.
        per_channel: how much the value drops per removed position (may be negative: a
            negative Slice start grows towards 0 as positions after it go).
        index_map: group channel -> the positions that count for this value; removing
            channel ``c`` drops the value by ``per_channel * len(index_map([c]))``.
    """

    node: str
    op_type: str
    input_index: int | None
    attribute: str | None
    position: int
    old_value: int
    per_channel: int
    index_map: IndexMap

    def delta(self, removed_channels: object) -> int:
        """Amount the value drops when ``removed_channels`` (group indices) are removed."""
        return self.per_channel * int(self.index_map.counts(removed_channels).sum())

    def to_dict(self) -> dict[str, object]:
        where = f"input {self.input_index}" if self.input_index is not None else f"attribute {self.attribute}"
        return {"node": self.node, "op_type": self.op_type, "where": where, "position": self.position,
                "old_value": self.old_value, "per_channel": self.per_channel, "map": repr(self.index_map)}


@dataclass(frozen=True)
class CouplingGroup:
    """Channels that must be removed together.

    Attributes:
        id: index of the group in ``Analysis.groups``.
        channels: number of channels (group indices are ``0 .. channels-1``).
        roots: prunable layers whose output channels are (part of) this group's channels.
        layers: every prunable layer with a weight slice in the group (roots, depthwise
            convs, consumers), in graph order.
        slices: constant tensors to slice (weights, biases, norm params, elementwise constants).
        values: runtime activations that carry the channels (role ``ACTIVATION``), for masks.
        statistics: inputs of nodes that reduce over the channels (role ``STATISTICS``: a LayerNorm's, a
            ReduceMean's); the masked model takes those means over the kept channels only.
        edits: integer shape data to change (see :class:`ShapeEdit`).
        channel_params: per channel, the weights it holds across all ``slices``
            (``prod(shape) / axis_size`` elements per position it owns on each slice's axis).
            A weight element reached by two slices of the same group counts twice. Embedding tables are
            sliced but not counted: they are not prunable weights (what ``--sparsity`` is a fraction of).
        channel_macs: per channel, the MACs it accounts for across all weight slices of
            prunable layers (``layer.macs * positions / axis_size``); zeros where a layer's
            MACs are unknown.
        frozen: None when the group may be pruned, else a one-sentence reason naming the node
            and op that stops it (a graph output, an op the analysis does not understand, ...).
    """

    id: int
    channels: int
    roots: tuple[str, ...]
    layers: tuple[str, ...]
    slices: tuple[TensorSlice, ...]
    values: tuple[TensorSlice, ...]
    edits: tuple[ShapeEdit, ...]
    channel_params: tuple[int, ...]
    channel_macs: tuple[int, ...]
    frozen: str | None = None
    statistics: tuple[TensorSlice, ...] = ()

    @property
    def params(self) -> int:
        """Total weights the group's channels hold across all its tensors."""
        return int(sum(self.channel_params))

    @property
    def macs(self) -> int:
        """Total MACs the group's channels account for (per sample at the analysed shape)."""
        return int(sum(self.channel_macs))

    @property
    def is_frozen(self) -> bool:
        return self.frozen is not None

    def slices_of(self, tensor: str) -> tuple[TensorSlice, ...]:
        """The group's slices (constant or activation) of ``tensor``."""
        return tuple(s for s in self.slices + self.values if s.tensor == tensor)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "channels": self.channels, "roots": list(self.roots), "layers": list(self.layers),
            "params": self.params, "macs": self.macs, "frozen": self.frozen,
            "slices": [s.to_dict() for s in self.slices], "values": [s.to_dict() for s in self.values],
            "statistics": [s.to_dict() for s in self.statistics],
            "edits": [e.to_dict() for e in self.edits],
        }


def check_keep(group: CouplingGroup, keep_indices: object) -> np.ndarray:
    """Validate a keep-set for ``group``.

    Args:
        group: the group.
        keep_indices: group channel indices to keep (any int sequence or array).

    Returns:
        The keep-set as a sorted, unique int64 array.

    Raises:
        ConstraintError: the group is frozen and the keep-set drops a channel, the keep-set
            is empty, or an index is outside ``[0, group.channels)``.
    """
    keep = np.unique(as_indices(keep_indices))
    where = f"coupling group {group.id} (roots {', '.join(group.roots) or 'none'})"
    if keep.size and (keep[0] < 0 or keep[-1] >= group.channels):
        bad = int(keep[0] if keep[0] < 0 else keep[-1])
        raise ConstraintError(f"{where} has {group.channels} channels, so index {bad} is out of range")
    if keep.size == 0:
        raise ConstraintError(f"{where} would keep no channel; keep at least one of its {group.channels}")
    if group.frozen is not None and keep.size != group.channels:
        raise ConstraintError(f"{where} is frozen and cannot lose channels: {group.frozen}")
    return keep
