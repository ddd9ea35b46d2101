"""Channel rules for Concat, Split and Slice.

On the channel axis they re-arrange positions: a ``Concat`` output holds its inputs'
positions one after another (each input keeps its own groups; the consumer's slices get
offsets), a ``Split`` output or ``Slice`` holds a window of its input's positions and
its sizes/bounds become :class:`~smart_onnx.graph.groups.ShapeEdit` records. On another
axis they tie their inputs' channels (Concat) or pass them on (Split, Slice).
"""

from __future__ import annotations

import numpy as np
import onnx

from smart_onnx.graph.coupling import Layout, Tracer, embedding_table, merge_operands
from smart_onnx.graph.groups import Role
from smart_onnx.graph.view import attr

__all__ = ["RULES"]


def _concat(t: Tracer, node: onnx.NodeProto) -> None:
    layouts = t.input_layouts(node)
    if not layouts:
        return
    rank = layouts[0][1].rank
    axis = int(attr(node, "axis", 0)) % rank
    if all(lay.axis != axis for _, lay in layouts):
        merged = merge_operands(t, node, list(range(len(node.input))), rank, Role.ELEMENTWISE_CONST, broadcast=False)
        if merged is not None:
            t.set_layout(node.output[0], merged, node)
        return
    if any(lay.axis != axis for _, lay in layouts):
        t.freeze_inputs(node, f"joins tensors whose channels are on different axes (concat axis {axis})")
        return
    parts = []
    for value in node.input:
        lay = t.layout(value)
        if lay is not None:
            parts.append(lay.owners)
            continue
        shape = t.shape(value)
        if shape is None:
            t.freeze_inputs(node, f"also joins {value!r}, whose shape is unknown")
            return
        # Positions that belong to no prunable layer: tying them to a group freezes it.
        parts.append(t.new_space(shape[axis], frozen=f"node {node.name!r} (Concat) joins in {value!r}, "
                                                      "whose channels the analysis cannot trace"))
    t.set_layout(node.output[0], Layout(axis, rank, np.concatenate(parts)), node)


def _split(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    axis = int(attr(node, "axis", 0)) % lay.rank
    outputs = list(node.output)
    if lay.axis != axis:
        for out in outputs:
            t.set_layout(out, lay, node)
        return
    opset = t.view.model.opset
    where: int | str = 1 if opset >= 13 else "split"
    sizes = t.constant_ints(node, 1) if opset >= 13 else attr(node, "split")
    if sizes is None and opset >= 13 and len(node.input) > 1 and node.input[1]:
        t.freeze_inputs(node, "takes its split sizes from a runtime tensor")
        return
    if sizes is None:
        shapes = [t.shape(o) for o in outputs]
        n, size = len(outputs), len(lay.owners)
        chunk = -(-size // n)  # ONNX: equal parts, the last one smaller
        sizes = [s[axis] for s in shapes] if None not in shapes else [chunk] * (n - 1) + [size - chunk * (n - 1)]
    if sum(sizes) != len(lay.owners) or len(sizes) != len(outputs):
        t.freeze_inputs(node, f"splits {len(lay.owners)} channels into sizes {list(sizes)}, which do not add up")
        return
    offset = 0
    for k, (out, size) in enumerate(zip(outputs, sizes)):
        segment = lay.owners[offset:offset + size]
        t.add_edit(node, where, k, size, segment)
        t.set_layout(out, Layout(axis, lay.rank, segment), node)
        offset += size


def _slice(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None and _rows_only(t, node, 2, 1):  # rows of a table: position embeddings[:seq_len]
        lay = embedding_table(t, node)
    if lay is None:
        return
    if any(i > 0 for i, _ in t.input_layouts(node)):
        t.freeze_inputs(node, "reads traced channels as its bounds")
        return
    new = t.view.model.opset >= 10
    if _rows_only(t, node, lay.rank, lay.axis):  # bounds on other axes, maybe read at run time (x[:seq_len])
        t.set_layout(node.output[0], lay, node)
        return
    params = _slice_params(t, node, new)
    if params is None:
        t.freeze_inputs(node, "takes its bounds from runtime tensors")
        return
    starts, ends, axes, steps = params
    axes = [a % lay.rank for a in (axes if axes is not None else range(len(starts)))]
    if lay.axis not in axes:
        t.set_layout(node.output[0], lay, node)
        return
    e = axes.index(lay.axis)
    if steps is not None and steps[e] != 1:
        t.freeze_inputs(node, f"slices the channel axis with step {steps[e]}; only step 1 is supported")
        return
    size, owners = len(lay.owners), lay.owners
    lo, hi = (min(max(v + size if v < 0 else v, 0), size) for v in (starts[e], ends[e]))
    _bound_edit(t, node, 1 if new else "starts", e, starts[e], lo, owners)
    if ends[e] < size:
        _bound_edit(t, node, 2 if new else "ends", e, ends[e], hi, owners)
    t.set_layout(node.output[0], Layout(lay.axis, lay.rank, owners[lo:max(lo, hi)]), node)


def _rows_only(t: Tracer, node: onnx.NodeProto, rank: int, channel_axis: int) -> bool:
    """Whether a Slice's constant ``axes`` leave ``channel_axis`` alone."""
    raw = attr(node, "axes") if t.view.model.opset < 10 else t.constant_ints(node, 3)
    return raw is not None and channel_axis not in {int(a) % rank for a in raw}


def _slice_params(t: Tracer, node: onnx.NodeProto, new: bool) -> tuple | None:
    """(starts, ends, axes or None, steps or None): inputs 1-4 from opset 10, attributes before."""
    if not new:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        return None if starts is None or ends is None else (starts, ends, attr(node, "axes"), None)
    values = [t.constant_ints(node, i) for i in (1, 2, 3, 4)]
    given = [i < len(node.input) and bool(node.input[i]) for i in (1, 2, 3, 4)]
    if any(g and v is None for g, v in zip(given, values)) or values[0] is None or values[1] is None:
        return None
    return tuple(values)


def _bound_edit(t: Tracer, node: onnx.NodeProto, where: int | str, entry: int, raw: int, clamped: int,
                owners: np.ndarray) -> None:
    """A non-negative bound drops with each removed position before it; a negative one rises
    towards 0 with each removed position at or after it."""
    if raw > 0:
        t.add_edit(node, where, entry, raw, owners[:clamped])
    elif raw < 0:
        t.add_edit(node, where, entry, raw, owners[clamped:], per_channel=-1)


RULES = {"Concat": _concat, "Split": _split, "Slice": _slice}
