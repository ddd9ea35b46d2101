"""Channel-coupling propagation state: which channels must be removed together (DepGraph on ONNX).

How it works. Every prunable layer's output channels form a *space* of channel nodes
(one node per channel). Walking the graph in topological order, each value that carries
channels gets a :class:`Layout`: its channel axis and, per position on that axis, the
channel node it holds. Rules per op move the channel axis (Transpose, Reshape, ...),
re-arrange positions (Concat, Split, Slice, Flatten), *tie* positions of different
operands together (residual Add/Mul, SE gates: a union-find over channel nodes) and
record the constants to slice and the shape entries to edit against the channel nodes of
each position:

* :mod:`~smart_onnx.graph.layer_rules` -- Conv/ConvTranspose/Gemm/MatMul (roots, consumers, depthwise);
* :mod:`~smart_onnx.graph.channel_rules` -- elementwise ops, norms, pooling, activations (and the dispatch);
* :mod:`~smart_onnx.graph.shape_rules` -- Transpose, (Un)Squeeze, Reshape/Flatten, Gather, reductions;
* :mod:`~smart_onnx.graph.concat_rules` -- Concat, Split, Slice;
* :mod:`~smart_onnx.graph.shape_trace` -- shape vectors computed from ``Shape`` at run time.

Positions the analysis cannot trace (constants concatenated in, ops it does not
understand) get *frozen* spaces or freeze the spaces they touch; a frozen channel tied to
a prunable one freezes its whole group. :func:`smart_onnx.graph.assemble.build_groups`
drives the walk and turns the records into groups: tied classes of channel nodes are the
group channels, spaces linked by ties form one group, and every record becomes a
:class:`~smart_onnx.graph.groups.TensorSlice` or :class:`~smart_onnx.graph.groups.ShapeEdit`
with an index map fitted to its (group channel, position) pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from smart_onnx.graph.groups import Role, ShapeEdit
from smart_onnx.graph.index_map import IdentityMap
from smart_onnx.graph.layers import PrunableLayer
from smart_onnx.graph.view import GraphView, static_dims
from smart_onnx.model import is_float_tensor

__all__ = ["EditRecord", "Layout", "SliceRecord", "Space", "Tracer", "embedding_table", "merge_operands"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Layout:
    """Where a value's channels are: ``owners[p]`` is the channel node at position ``p`` of ``axis``."""

    axis: int
    rank: int
    owners: np.ndarray

    def moved(self, axis: int, rank: int) -> Layout:
        return Layout(axis, rank, self.owners)


@dataclass(frozen=True, eq=False)
class SliceRecord:
    tensor: str
    axis: int
    role: Role
    node: str
    owners: np.ndarray  # channel node per position on the axis (-1: none)


@dataclass(frozen=True, eq=False)
class EditRecord:
    edit: ShapeEdit  # its index_map is a placeholder until the groups are known
    owners: np.ndarray  # channel node of each position that counts for the value


@dataclass
class Space:
    start: int
    size: int
    layer: str | None  # the prunable layer whose output channels these are
    frozen: str | None


class Tracer:
    """Propagation state shared by the op rules."""

    def __init__(self, view: GraphView, layers: Sequence[PrunableLayer], shapes: Mapping[str, tuple[int, ...]]):
        self.view = view
        self.shapes = shapes
        self.layers = {layer.name: layer for layer in layers}
        self.spaces: list[Space] = []
        self.parent: list[int] = []
        self.layouts: dict[str, Layout] = {}
        self.slices: list[SliceRecord] = []
        self.edits: list[EditRecord] = []
        self.missing: set[str] = set()  # values whose unknown shape a rule needed
        # (node, input index) of shape pieces read at run time that the rewrite replaces with a constant -> its value
        self.replaced: dict[tuple[str, int], int] = {}
        self._static: dict[str, tuple[int | None, ...]] | None = None

    def static_dim(self, value: str, axis: int) -> int | None:
        """Dim ``axis`` of ``value`` when it is the same for every input the model accepts, else None."""
        if self._static is None:
            self._static = static_dims(self.view.model)
        dims = self._static.get(value)
        return dims[axis] if dims is not None and 0 <= axis < len(dims) else None

    # ---------------------------------------------------------------- spaces and ties
    def new_space(self, size: int, layer: str | None = None, frozen: str | None = None) -> np.ndarray:
        """Fresh channel nodes for ``size`` channels; returns their ids (the owners of a new axis)."""
        start = len(self.parent)
        self.spaces.append(Space(start, size, layer, frozen))
        self.parent.extend(range(start, start + size))
        return np.arange(start, start + size, dtype=np.int64)

    def find(self, n: int) -> int:
        parent = self.parent
        root = n
        while parent[root] != root:
            root = parent[root]
        while parent[n] != root:
            parent[n], n = root, parent[n]
        return root

    def tie(self, a: np.ndarray, b: np.ndarray) -> None:
        """Positions ``a[p]`` and ``b[p]`` hold the same channel (a residual Add, an SE Mul...)."""
        for x, y in zip(a.tolist(), b.tolist()):
            if x >= 0 and y >= 0:
                rx, ry = self.find(x), self.find(y)
                if rx != ry:
                    self.parent[max(rx, ry)] = min(rx, ry)

    def space_index(self, owners: np.ndarray) -> np.ndarray:
        starts = np.asarray([s.start for s in self.spaces], dtype=np.int64)
        return np.searchsorted(starts, owners[owners >= 0], side="right") - 1

    def freeze(self, owners: np.ndarray, reason: str) -> None:
        """Freeze the spaces (so, at the end, the groups) of ``owners`` with ``reason``."""
        for i in np.unique(self.space_index(np.asarray(owners, dtype=np.int64))).tolist():
            if self.spaces[i].frozen is None:
                self.spaces[i].frozen = reason

    def freeze_inputs(self, node: onnx.NodeProto, why: str) -> None:
        """Freeze every channel-carrying input of ``node``: ``node 'n' (Op) <why>``."""
        for _, layout in self.input_layouts(node):
            self.freeze(layout.owners, f"node {node.name!r} ({node.op_type}) {why}")

    # ---------------------------------------------------------------- values
    def layout(self, value: str) -> Layout | None:
        return self.layouts.get(value) if value else None

    def input_layouts(self, node: onnx.NodeProto) -> list[tuple[int, Layout]]:
        return [(i, lay) for i, v in enumerate(node.input) if (lay := self.layout(v)) is not None]

    def data_layout(self, node: onnx.NodeProto, role_of_others: str) -> Layout | None:
        """Layout of input 0, for ops whose other inputs are parameters or shape data.

        If another input carries traced channels, freezes them all (``role_of_others`` says
        what the op reads there) and returns None.
        """
        layouts = self.input_layouts(node)
        if any(i > 0 for i, _ in layouts):
            self.freeze_inputs(node, f"reads traced channels as its {role_of_others}")
            return None
        return layouts[0][1] if layouts else None

    def set_layout(self, value: str, layout: Layout, node: onnx.NodeProto) -> None:
        if not value:
            return
        self.layouts[value] = layout
        self.slices.append(SliceRecord(value, layout.axis, Role.ACTIVATION, node.name, layout.owners))

    def shape(self, value: str) -> tuple[int, ...] | None:
        """Concrete shape of a value or initializer, or None (remembered in :attr:`missing`)."""
        shape = self._known_shape(value)
        if shape is None and value:
            self.missing.add(value)
        return shape

    def _known_shape(self, value: str) -> tuple[int, ...] | None:
        if value in self.view.initializers:
            return tuple(int(d) for d in self.view.initializers[value].dims)
        return self.shapes.get(value)

    def rank(self, value: str) -> int | None:
        shape = self._known_shape(value)
        if shape is not None:
            return len(shape)
        lay = self.layout(value)
        if lay is None and value:
            self.missing.add(value)
        return lay.rank if lay is not None else None

    def initializer_behind(self, value: str) -> str | None:
        """The initializer ``value`` is, directly or through Identity nodes (torch's de-duplicated
        parameters), or None."""
        while value not in self.view.initializers:
            node = self.view.producer(value)
            if node is None or node.op_type != "Identity":
                return None
            value = node.input[0]
        return value

    def constant_ints(self, node: onnx.NodeProto, index: int) -> list[int] | None:
        """Input ``index`` of ``node`` as a list of ints when it is a constant, else None."""
        if len(node.input) <= index or not node.input[index]:
            return None
        value = self.view.constant(node.input[index])
        return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]

    # ---------------------------------------------------------------- records
    def add_slice(self, tensor: str, axis: int, owners: np.ndarray, role: Role, node: onnx.NodeProto) -> None:
        self.slices.append(SliceRecord(tensor, axis, role, node.name, np.asarray(owners, dtype=np.int64)))

    def add_edit(
        self, node: onnx.NodeProto, where: int | str, position: int, old_value: int, owners: np.ndarray,
        per_channel: int = 1,
    ) -> None:
        """Record that entry ``position`` of input ``where`` (int) or attribute ``where`` (str) shrinks."""
        index, attribute = (where, None) if isinstance(where, int) else (None, where)
        edit = ShapeEdit(node.name, node.op_type, index, attribute, position, int(old_value), per_channel,
                         IdentityMap())
        self.edits.append(EditRecord(edit, np.asarray(owners, dtype=np.int64)))


def embedding_table(t: Tracer, node: onnx.NodeProto, index: int = 0) -> Layout | None:
    """The channels of a float ``[rows, width]`` constant that ``node`` reads along its rows (a Gather of token
    embeddings, a Slice of position embeddings): a new space of ``width`` channels, the table's columns, which
    a residual ``Add`` ties to the layers writing the same stream. None when input ``index`` is no such table."""
    source = t.initializer_behind(node.input[index]) if len(node.input) > index and node.input[index] else None
    if source is None or not is_float_tensor(t.view.initializers[source]):
        return None
    shape = t.shape(source)
    if shape is None or len(shape) != 2:
        return None
    owners = t.new_space(shape[1])
    t.add_slice(source, 1, owners, Role.EMBEDDING, node)
    return Layout(1, 2, owners)


def merge_operands(t: Tracer, node: onnx.NodeProto, inputs: list[int], rank: int | None, role: Role,
                   broadcast: bool = True) -> Layout | None:
    """Tie the channel positions of ``node.input[i]`` (``i`` in ``inputs``) aligned to ``rank``.

    Operands with a layout must put it on the same output axis (a one-channel operand,
    such as a spatial-attention map, broadcasts and is not tied); constant operands with
    a channel-sized dim there are recorded with ``role``; runtime operands without a
    layout must be size 1 there. Returns the merged layout, or None (nothing or frozen).
    """
    layouts = [(i, lay) for i, lay in t.input_layouts(node) if i in inputs]
    if not layouts:
        return None
    if rank is None:
        t.freeze_inputs(node, "has an output of unknown rank")
        return None
    width = max(len(lay.owners) for _, lay in layouts)
    tied = [lay for _, lay in layouts if len(lay.owners) == width or not broadcast or len(lay.owners) != 1]
    axes = {lay.axis + rank - lay.rank for lay in tied}
    base = tied[0].owners
    if len(axes) != 1 or any(len(lay.owners) != width for lay in tied):
        t.freeze_inputs(node, "combines channel axes that do not line up")
        return None
    axis = axes.pop()
    for lay in tied[1:]:
        t.tie(base, lay.owners)
    others = [i for i in inputs if i < len(node.input) and node.input[i] and i not in {j for j, _ in layouts}]
    if not all(_constant_operand(t, node, node.input[i], axis, rank, base, role, broadcast) for i in others):
        return None
    return Layout(axis, rank, base)


def _constant_operand(t: Tracer, node: onnx.NodeProto, value: str, axis: int, rank: int, owners: np.ndarray,
                      role: Role, broadcast: bool) -> bool:
    """Record an untraced operand's channel dim as a slice (constants) or freeze (runtime); False if frozen."""
    shape = t.shape(value)
    if shape is None:
        t.freeze_inputs(node, f"also reads {value!r}, whose shape is unknown")
        return False
    k = axis - (rank - len(shape)) if broadcast else axis
    if k < 0 or shape[k] == 1:
        return True
    source = t.initializer_behind(value)
    if source is not None and shape[k] == len(owners):
        t.add_slice(source, k, owners, role, node)
        return True
    t.freeze_inputs(node, f"also reads {value!r}, whose channels the analysis cannot trace")
    return False
