"""Where an entry of a computed shape tensor comes from (Reshape targets built at run time).

Exporters build Reshape targets from ``Shape`` of a tensor: ``Concat(Slice(Shape(x), 0, 2), [-1])``
for ``x.flatten(2)``, ``Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])`` for ``x.view(B, -1)``.
An entry taken from a constant may hold a baked channel count (a ShapeEdit); an entry read
from ``Shape(v)`` on the axis where ``v`` carries the same channels follows the pruned size
at run time by itself.
"""

from __future__ import annotations

import numpy as np
import onnx

from smart_onnx.graph.coupling import Tracer
from smart_onnx.graph.view import attr

__all__ = ["follows_channels", "freeze_unsafe_shape_reads", "locate_piece"]

_PASS = ("Cast", "Identity", "Squeeze", "Unsqueeze")  # on a shape vector: entries stay (scalars become [1])


def _shape_window(node: onnx.NodeProto, rank: int) -> tuple[int, int]:
    """The dims ``[start, end)`` a ``Shape`` node returns (opset 15 ``start``/``end``, clamped like ONNX)."""
    def clamp(v: int) -> int:
        return min(max(v + rank if v < 0 else v, 0), rank)

    return clamp(int(attr(node, "start", 0))), clamp(int(attr(node, "end", rank)))


def locate_piece(t: Tracer, producer: onnx.NodeProto, position: int) -> tuple[int, int] | None:
    """Entry ``position`` of a shape vector built by ``Concat`` of 1-D pieces: ``(input index, entry)``."""
    if producer.op_type != "Concat":
        return None
    offset = 0
    for index, value in enumerate(producer.input):
        shape = t.shape(value)
        if shape is None or len(shape) > 1:
            return None
        size = shape[0] if shape else 1
        if position < offset + size:
            return index, position - offset
        offset += size
    return None


def follows_channels(t: Tracer, value: str, entry: int, owners: np.ndarray, depth: int = 0) -> bool:
    """True when entry ``entry`` of shape vector ``value`` is read at run time from a tensor
    whose channel axis holds exactly ``owners`` (so it shrinks with them)."""
    node = t.view.producer(value)
    if node is None or depth > 8:
        return False
    if node.op_type == "Shape":
        source = t.layout(node.input[0])
        if source is None:
            return False
        dim = _shape_window(node, source.rank)[0] + entry
        return source.axis == dim and np.array_equal(source.owners, owners)
    if node.op_type in _PASS:
        return follows_channels(t, node.input[0], entry, owners, depth + 1)
    if node.op_type == "Gather" and int(attr(node, "axis", 0)) == 0:
        index = t.constant_ints(node, 1)
        return index is not None and follows_channels(t, node.input[0], index[min(entry, len(index) - 1)],
                                                      owners, depth + 1)
    if node.op_type == "Slice":
        starts, axes, steps = t.constant_ints(node, 1), t.constant_ints(node, 3), t.constant_ints(node, 4)
        if starts is None or (axes not in (None, [0])) or (steps not in (None, [1])) or starts[0] < 0:
            return False
        return follows_channels(t, node.input[0], starts[0] + entry, owners, depth + 1)
    located = locate_piece(t, node, entry)
    return located is not None and follows_channels(t, node.input[located[0]], located[1], owners, depth + 1)


def freeze_unsafe_shape_reads(t: Tracer) -> None:
    """A channel count read with ``Shape`` must only size tensors that carry the same channels.

    Follows each ``Shape`` of a channel-carrying value forward through Gather/Slice/Concat/
    (Un)Squeeze/Cast/Identity on shape vectors. The channel entry may end in a Reshape target
    whose output carries the same channels on that axis; any other use (arithmetic, Expand,
    ConstantOfShape, the Reshape of another tensor) would keep the old count, so it freezes.
    """
    for node in t.view.nodes:
        lay = t.layout(node.input[0]) if node.input else None
        if lay is None:
            continue
        if node.op_type == "Size":
            t.freeze(lay.owners, f"node {node.name!r} (Size) counts elements across the channel axis")
        elif node.op_type == "Shape":
            start, end = _shape_window(node, lay.rank)
            if start <= lay.axis < end:
                _follow(t, node.output[0], {lay.axis - start}, lay.owners, 0)


def _follow(t: Tracer, value: str, entries: set[int], owners: np.ndarray, depth: int) -> None:
    if t.view.is_output(value) or value in t.view.subgraph_reads or depth > 16:
        t.freeze(owners, f"the channel count read into {value!r} leaves the graph or a subgraph")
        return
    for consumer, slot in t.view.consumers(value):
        if (consumer.name, slot) in t.replaced:  # the rewrite puts a constant there
            continue
        if consumer.op_type == "Reshape" and slot == 1:
            out = t.layout(consumer.output[0])
            if out is None or entries != {out.axis} or not _same_channels(t, out.owners, owners):
                t.freeze(owners, f"node {consumer.name!r} (Reshape) takes a shape entry from the channel count "
                                 "of another tensor")
            continue
        carried = _carry(t, consumer, slot, entries)
        if carried is None:
            t.freeze(owners, f"node {consumer.name!r} ({consumer.op_type}) computes with a channel count read "
                             "by Shape, which would not follow pruning")
        elif carried:
            _follow(t, consumer.output[0], carried, owners, depth + 1)


def _carry(t: Tracer, node: onnx.NodeProto, slot: int, entries: set[int]) -> set[int] | None:
    """Entries of ``node``'s output holding the channel count, given those of input ``slot``;
    None when the op computes with it."""
    if node.op_type in _PASS and slot == 0:
        return set(entries)
    if node.op_type == "Gather" and slot == 0 and int(attr(node, "axis", 0)) == 0:
        index = t.constant_ints(node, 1)
        return None if index is None else {i for i, k in enumerate(index) if k in entries}
    if node.op_type == "Slice" and slot == 0:
        starts, ends, steps = t.constant_ints(node, 1), t.constant_ints(node, 2), t.constant_ints(node, 4)
        if starts is None or ends is None or steps not in (None, [1]) or starts[0] < 0:
            return None
        return {e - starts[0] for e in entries if starts[0] <= e < (ends[0] if ends[0] >= 0 else 1 << 62)}
    if node.op_type == "Concat":
        offset = 0
        for value in node.input[:slot]:
            shape = t.shape(value)
            if shape is None or len(shape) > 1:
                return None
            offset += shape[0] if shape else 1
        return {e + offset for e in entries}
    if node.op_type in ("Shape", "Size"):
        return set()
    return None


def _same_channels(t: Tracer, a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and all(t.find(x) == t.find(y) for x, y in zip(a.tolist(), b.tolist()))
