"""Channel rules for ops that move the channel axis: Transpose, (Un)Squeeze, Reshape/Flatten,
Gather, Expand, Tile, reductions. Concat/Split/Slice are in :mod:`smart_onnx.graph.concat_rules`.

``Reshape``/``Flatten`` are followed through the inferred input and output shapes: a
reshape that keeps the channel axis whole (possibly merged with neighbouring dims, as a
``Flatten`` into a Gemm does, NCHW or NHWC) is followed; one that splits the last axis into
``[H, D]`` carries attention heads (:mod:`~smart_onnx.graph.head_rules`); other splits freeze.
A Reshape target with the channel count baked in becomes a ShapeEdit: in the Reshape's own
constant, or in a constant input of the ``Concat`` that builds the target.
"""

from __future__ import annotations

import numpy as np
import onnx

from smart_onnx.graph import concat_rules
from smart_onnx.graph.coupling import Layout, Tracer, embedding_table
from smart_onnx.graph.groups import Role
from smart_onnx.graph.head_rules import head_split, tie_heads
from smart_onnx.graph.shape_trace import follows_channels, locate_piece
from smart_onnx.graph.view import attr

__all__ = ["RULES", "regroup", "statistics"]


def _axes(t: Tracer, node: onnx.NodeProto, since: int, rank: int) -> list[int] | None:
    """The ``axes`` of a Squeeze/Unsqueeze/Reduce: an attribute before opset ``since``, input 1 from it."""
    raw = attr(node, "axes") if t.view.model.opset < since else t.constant_ints(node, 1)
    return None if raw is None else sorted(int(a) % rank for a in raw)


def _transpose(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    perm = [int(p) for p in (attr(node, "perm") or reversed(range(lay.rank)))]
    t.set_layout(node.output[0], lay.moved(perm.index(lay.axis), lay.rank), node)


def _unsqueeze(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    raw = attr(node, "axes") if t.view.model.opset < 13 else t.constant_ints(node, 1)
    if raw is None:
        t.freeze_inputs(node, "takes its axes from a runtime tensor")
        return
    rank = lay.rank + len(raw)
    inserted = {int(a) % rank for a in raw}
    kept = [a for a in range(rank) if a not in inserted]
    t.set_layout(node.output[0], lay.moved(kept[lay.axis], rank), node)


def _squeeze(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    axes = _axes(t, node, 13, lay.rank)
    if axes is None:
        shape = t.shape(node.input[0])
        if shape is None or (len(node.input) > 1 and node.input[1]):
            t.freeze_inputs(node, "squeezes axes the analysis cannot determine")
            return
        axes = [a for a, d in enumerate(shape) if d == 1]
    if lay.axis in axes:
        t.freeze_inputs(node, f"removes axis {lay.axis}, which carries the channels")
        return
    t.set_layout(node.output[0], lay.moved(lay.axis - sum(a < lay.axis for a in axes), lay.rank - len(axes)), node)


def _reduce(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [int(attr(node, "axis", 0)) % lay.rank]
    else:
        since = 13 if node.op_type == "ReduceSum" else 18
        axes = _axes(t, node, since, lay.rank)
        if not axes and not attr(node, "noop_with_empty_axes", 0):
            axes = list(range(lay.rank))
    if lay.axis in (axes or ()):
        if node.op_type == "ReduceMean":  # a LayerNorm's mean or variance: taken over the kept channels
            statistics(t, node, lay, axes)
        else:
            t.freeze_inputs(node, f"reduces over axis {lay.axis}, which carries the channels")
        return
    if axes is None:
        t.freeze_inputs(node, "takes its axes from a runtime tensor")
        return
    keep = int(attr(node, "keepdims", 1))
    axis = lay.axis if keep else lay.axis - sum(a < lay.axis for a in axes)
    t.set_layout(node.output[0], lay.moved(axis, lay.rank if keep else lay.rank - len(axes)), node)


# The outputs that return a LayerNorm's mean and inverse standard deviation.
_STATISTICS_OUTPUTS = {"LayerNormalization": (1, 2), "SkipLayerNormalization": (1, 2)}


def statistics(t: Tracer, node: onnx.NodeProto, lay: Layout, axes: list[int], value: str | None = None) -> bool:
    """A mean (LayerNorm's mean and variance, a ReduceMean) over the channel axis alone: recorded, so that the
    masked model takes it over the kept channels only, which is what the pruned model computes. False (frozen)
    when it also runs over other axes, or a LayerNorm returns its statistics. ``value`` is what the mean runs
    over (for its shape), where that is not input 0."""
    if axes != [lay.axis]:
        t.freeze_inputs(node, f"takes its mean over axes {axes}, the channel axis {lay.axis} with others, so it "
                              "cannot be taken over the kept channels alone")
        return False
    returned = [node.output[i] for i in _STATISTICS_OUTPUTS.get(node.op_type, ()) if i < len(node.output)]
    if any(returned):
        names = ", ".join(repr(name) for name in returned if name)
        t.freeze_inputs(node, f"also returns its mean or inverse standard deviation ({names}), which would change "
                              "with the channels")
        return False
    t.add_slice(value or node.input[0], lay.axis, lay.owners, Role.STATISTICS, node)
    return True


def _gather(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None and int(attr(node, "axis", 0)) == 0:  # token embeddings: rows of a table
        lay = embedding_table(t, node)
    if lay is None:
        return
    g = int(attr(node, "axis", 0)) % lay.rank
    q = t.rank(node.input[1])
    if g == lay.axis or q is None:
        t.freeze_inputs(node, f"gathers along axis {g}, which carries the channels" if g == lay.axis
                        else "has indices of unknown rank")
        return
    axis = lay.axis if lay.axis < g else lay.axis + q - 1
    t.set_layout(node.output[0], lay.moved(axis, lay.rank + q - 1), node)


def _expand(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    target = t.shape(node.input[1])
    rank = t.rank(node.output[0]) or (max(lay.rank, target[0]) if target else None)
    if rank is None:
        t.freeze_inputs(node, "has an output of unknown rank")
        return
    axis = lay.axis + rank - lay.rank
    out = t.shape(node.output[0])
    if out is not None and out[axis] != len(lay.owners):
        t.freeze_inputs(node, f"broadcasts the channel axis to {out[axis]}")
        return
    t.set_layout(node.output[0], lay.moved(axis, rank), node)


def _tile(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    repeats = t.constant_ints(node, 1)
    if repeats is None or repeats[lay.axis] != 1:
        t.freeze_inputs(node, "repeats the channel axis")
        return
    t.set_layout(node.output[0], lay, node)


def regroup(in_shape: tuple[int, ...], out_shape: tuple[int, ...], axis: int,
            owners: np.ndarray) -> tuple[int, np.ndarray] | str:
    """Follow channel ``axis`` of ``in_shape`` through a reshape to ``out_shape``.

    Returns:
        ``(out_axis, owners on it)``, or a reason when the channel axis is split.
    """
    if in_shape[axis] == 1 and len(out_shape) < len(in_shape):
        return "drops the size-1 channel axis"
    p_in = np.cumprod([1, *in_shape]).tolist()
    p_out = np.cumprod([1, *out_shape]).tolist()
    marks = set(p_out)
    try:
        i0 = max(i for i in range(axis + 1) if p_in[i] in marks)
        i1 = min(i for i in range(axis + 1, len(p_in)) if p_in[i] in marks)
        j1 = p_out.index(p_in[i1])
        j0 = max(j for j in range(j1) if p_out[j] == p_in[i0])
    except ValueError:  # sizes that do not match, or a channel axis lost among size-1 dims
        return f"reshapes {list(in_shape)} to {list(out_shape)} in a way the analysis cannot follow"
    wide = [j for j in range(j0, j1) if out_shape[j] != 1]
    if len(wide) > 1:
        return f"splits the channel axis ({in_shape[axis]}) across output dims {[out_shape[j] for j in wide]}"
    block = in_shape[i0:i1]
    grid = owners.reshape([-1 if k == axis - i0 else 1 for k in range(len(block))])
    return (wide[0] if wide else j1 - 1), np.broadcast_to(grid, block).reshape(-1).copy()


def _reshape(t: Tracer, node: onnx.NodeProto) -> None:
    lay = t.layout(node.input[0])
    if lay is None:
        return
    in_shape, out_shape = t.shape(node.input[0]), t.shape(node.output[0])
    if in_shape is None or out_shape is None:
        t.freeze_inputs(node, "has an input or output of unknown shape")
        return
    moved = regroup(in_shape, out_shape, lay.axis, lay.owners)
    split = head_split(in_shape, out_shape, lay.axis) if isinstance(moved, str) else None
    if split is not None:  # [.., H*D] -> [.., H, D] (or [.., 3, H, D]): attention heads, one channel each
        moved = len(out_shape) - 2, tie_heads(t, lay, split)
    if isinstance(moved, str):
        t.freeze_inputs(node, moved)
        return
    axis, owners = moved
    if node.op_type == "Reshape" and not _target_edit(t, node, axis, owners, in_axis=lay.axis):
        return
    t.set_layout(node.output[0], Layout(axis, len(out_shape), owners), node)


def _target_edit(t: Tracer, node: onnx.NodeProto, axis: int, owners: np.ndarray, in_axis: int) -> bool:
    """Record the edit of the Reshape target entry for the channel axis; False (frozen) if impossible."""
    holder, index, position = node, 1, axis
    values = t.constant_ints(node, 1)
    if values is None:
        producer = t.view.producer(node.input[1])
        located = locate_piece(t, producer, axis) if producer is not None else None
        if located is not None and producer.input[located[0]] not in t.view.initializers:
            piece = producer.input[located[0]]
            if follows_channels(t, piece, located[1], owners):
                return True
            if _fixed_count_piece(t, node, piece, located[1], axis, len(owners)):
                # Read at run time from a dim the weights fix: the rewriter puts the new count there.
                t.replaced[(producer.name, located[0])] = len(owners)
                t.add_edit(producer, located[0], 0, len(owners), owners)
                return True
            located = None
        if located is None:
            t.freeze_inputs(node, "computes its target shape at run time, so the analysis cannot tell "
                                  "whether it holds the channel count")
            return False
        holder, index, position = producer, located[0], located[1]
        values = t.constant_ints(producer, index)
    value = values[position]
    if value == -1 or (value == 0 and axis == in_axis and not attr(node, "allowzero", 0)):
        return True
    if value != len(owners):
        t.freeze_inputs(node, f"has target entry {value} where the channel axis has {len(owners)} positions")
        return False
    t.add_edit(holder, index, position, value, owners)
    return True


def _fixed_count_piece(t: Tracer, reshape: onnx.NodeProto, piece: str, entry: int, axis: int, count: int) -> bool:
    """A one-entry shape piece computed at run time whose value is ``count`` for every input.

    Shape inference on the model as declared (symbolic batch and sequence) proves it: the
    Reshape's output has the fixed size ``count`` on that axis. Attention's ``reshape(b, s, d)``
    reads ``d`` from the residual stream this way.
    """
    shape = t.shape(piece)
    return shape == (1,) and entry == 0 and t.static_dim(reshape.output[0], axis) == count


RULES = {
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Gather": _gather,
    "Expand": _expand,
    "Tile": _tile,
    "Reshape": _reshape,
    "Flatten": _reshape,
    **{op: _reduce for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                              "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin")},
    **concat_rules.RULES,
}
