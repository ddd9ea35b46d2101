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

__all__ = ["follows_channels", "locate_piece"]

_PASS = ("Cast", "Identity", "Squeeze", "Unsqueeze")  # on a shape vector: entries stay (scalars become [1])


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
        dim = int(attr(node, "start", 0)) % source.rank + entry
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
