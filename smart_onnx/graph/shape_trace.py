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
        if (consumer.name, slot) in t.replaced:
            # The rewrite puts a constant there, also when only the channels read here shrink: a pin of theirs.
            t.add_edit(consumer, slot, 0, t.replaced[(consumer.name, slot)], owners, per_channel=0)
            continue
        if consumer.op_type == "Reshape" and slot == 1:
            out = t.layout(consumer.output[0])
            if out is None or entries != {out.axis} or not _same_channels(t, out.owners, owners):
                t.freeze(owners, f"node {consumer.name!r} (Reshape) takes a shape entry from the channel count "
                                 "of another tensor")
            continue
        carried = _carry(t, consumer, slot, entries)
        if carried is None and not _pin(t, consumer, owners):
            t.freeze(owners, f"node {consumer.name!r} ({consumer.op_type}) computes with a channel count read "
                             "by Shape, which would not follow pruning")
        elif carried:
            _follow(t, consumer.output[0], carried, owners, depth + 1)


# Scalar arithmetic on shape entries: a head size ``d // heads`` is Div, Cast, Unsqueeze.
_ARITHMETIC = ("Add", "Cast", "Ceil", "Div", "Floor", "Identity", "Mul", "Squeeze", "Sub", "Unsqueeze")


def _pin(t: Tracer, node: onnx.NodeProto, owners: np.ndarray) -> bool:
    """Arithmetic on a channel count read by Shape whose every result is a one-entry piece of Reshape targets,
    fixed for every input the model accepts (attention's ``reshape(b, s, heads, d // heads)`` with ``d`` read from
    the residual stream): the rewrite writes those pieces as constants (pins), so they do not follow the pruned
    count. False, pinning nothing, when any result goes elsewhere or is not fixed."""
    pieces: list[tuple[onnx.NodeProto, int, int]] = []
    if node.op_type not in _ARITHMETIC or not _pieces(t, node.output[0], pieces, 0):
        return False
    for concat, slot, value in pieces:
        t.replaced[(concat.name, slot)] = value
        t.add_edit(concat, slot, 0, value, owners, per_channel=0)
    return True


def _pieces(t: Tracer, value: str, out: list[tuple[onnx.NodeProto, int, int]], depth: int) -> bool:
    """Collect ``(Concat, input index, fixed value)`` of every Reshape-target piece ``value`` ends in; False if it
    ends anywhere else."""
    if depth > 8 or t.view.is_output(value) or value in t.view.subgraph_reads:
        return False
    for consumer, slot in t.view.consumers(value):
        if consumer.op_type in _ARITHMETIC:
            if not _pieces(t, consumer.output[0], out, depth + 1):
                return False
            continue
        fixed = _fixed_piece(t, consumer, slot) if consumer.op_type == "Concat" else None
        if fixed is None:
            return False
        out.append((consumer, slot, fixed))
    return True


def _fixed_piece(t: Tracer, concat: onnx.NodeProto, slot: int) -> int | None:
    """The value of one-entry piece ``slot`` of a Concat that only builds Reshape targets, when it is the same
    for every input the model accepts (computed from constants and static dims only), else None."""
    piece = concat.input[slot]
    if t.shape(piece) != (1,) or not _from_fixed_dims(t, piece, 0):
        return None
    entry = 0
    for value in concat.input[:slot]:
        shape = t.shape(value)
        if shape is None or len(shape) != 1:
            return None
        entry += shape[0]
    sizes = set()
    for reshape, index in t.view.consumers(concat.output[0]):
        out = t.shape(reshape.output[0])
        if reshape.op_type != "Reshape" or index != 1 or out is None or entry >= len(out):
            return None
        sizes.add(out[entry])
    return sizes.pop() if len(sizes) == 1 else None


def _from_fixed_dims(t: Tracer, value: str, depth: int) -> bool:
    """Whether shape data ``value`` is computed from constants and dims that are static (fixed by the weights)."""
    if value in t.view.initializers:
        return True
    node = t.view.producer(value)
    if node is None or depth > 12:
        return False
    if node.op_type == "Shape":
        return _static_entries(t, node, None)
    source = t.view.producer(node.input[0]) if node.op_type == "Gather" and node.input else None
    if source is not None and source.op_type == "Shape" and int(attr(node, "axis", 0)) == 0:
        picked = t.constant_ints(node, 1)
        return picked is not None and _static_entries(t, source, picked)
    if node.op_type in (*_ARITHMETIC, "Concat", "Gather"):
        return all(_from_fixed_dims(t, v, depth + 1) for v in node.input if v)
    return False


def _static_entries(t: Tracer, shape: onnx.NodeProto, picked: list[int] | None) -> bool:
    """Whether entries ``picked`` (None: all) of the vector a ``Shape`` node returns are static dims."""
    rank = t.rank(shape.input[0])
    start, end = _shape_window(shape, rank) if rank is not None else (0, 0)
    dims = range(start, end) if picked is None else [start + i % max(end - start, 1) for i in picked]
    return end > start and all(t.static_dim(shape.input[0], a) is not None for a in dims)


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
