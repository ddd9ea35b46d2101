"""Channel mode: physically remove the channels a keep-set drops.

The analysis (:mod:`smart_onnx.graph`) says, per coupling group, which constant
tensor axes hold the group's channels (:class:`~smart_onnx.graph.groups.TensorSlice`)
and which integers in the graph shrink with it (:class:`~smart_onnx.graph.groups.ShapeEdit`:
Split sizes, Slice bounds, Reshape targets, a depthwise conv's ``group``). This pass
turns keep-sets into one plan -- positions to delete per ``(tensor, axis)``, new values
per shape entry -- checks the whole plan against the model, and only then edits a copy.
Several groups may cut the same axis (a ``Concat`` consumer): their positions are united,
and edits of one entry add up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.graph.groups import CouplingGroup, ShapeEdit, check_keep
from smart_onnx.model import OnnxModel, tensor_to_array
from smart_onnx.rewrite._util import replace_tensor
from smart_onnx.rewrite.passes import Pass, PassResult, run_passes
from smart_onnx.rewrite.shape_edits import EditKey, ShapeEditor
from smart_onnx.rewrite.value_info import DropStaleValueInfo

__all__ = ["ChannelPlan", "RemoveChannels", "apply_channel_masks", "plan_channel_removal"]

log = logging.getLogger(__name__)

# Slice bounds are positions, so 0 is a valid start; a size, group count or Reshape dim of 0 is not.
_MAY_REACH_ZERO = frozenset({"Slice"})


@dataclass
class ChannelPlan:
    """Everything a set of keep-sets changes.

    Attributes:
        removals: ``(tensor, axis)`` -> sorted positions to delete from that axis.
        edits: ``(node, input index or attribute name, position)`` -> ``(old value, new value)``.
        removed: group id -> removed group channel indices (groups that lose nothing are absent).
    """

    removals: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    edits: dict[EditKey, tuple[int, int]] = field(default_factory=dict)
    removed: dict[int, np.ndarray] = field(default_factory=dict)


def _groups_of(analysis_or_groups: object) -> dict[int, CouplingGroup]:
    groups = getattr(analysis_or_groups, "groups", analysis_or_groups)
    return {g.id: g for g in groups}  # type: ignore[union-attr]


def plan_channel_removal(
    groups: Iterable[CouplingGroup] | object, keep: Mapping[int, object]
) -> ChannelPlan:
    """Combine keep-sets into one :class:`ChannelPlan` (groups not in ``keep`` keep every channel).

    Raises:
        ConstraintError: ``keep`` names an unknown group, or a keep-set is empty, out of
            range, or drops channels of a frozen group.
    """
    by_id = _groups_of(groups)
    plan = ChannelPlan()
    for gid in sorted(keep):
        group = by_id.get(int(gid))
        if group is None:
            raise ConstraintError(f"a keep-set names coupling group {gid}, but the groups are 0..{len(by_id) - 1}")
        kept = check_keep(group, keep[gid])
        removed = np.setdiff1d(np.arange(group.channels, dtype=np.int64), kept)
        if removed.size:
            plan.removed[group.id] = removed
            _add_group(plan, group, removed)
    return plan


def _add_group(plan: ChannelPlan, group: CouplingGroup, removed: np.ndarray) -> None:
    for s in group.slices:
        if not s.constant:
            continue
        pos = s.removed_positions(removed)
        key = (s.tensor, s.axis)
        plan.removals[key] = np.union1d(plan.removals.get(key, np.empty(0, np.int64)), pos).astype(np.int64)
    for e in group.edits:
        delta = e.delta(removed)
        if delta == 0 and e.per_channel != 0:  # a pin (per_channel 0) is written whenever its group loses any
            continue
        key = _edit_key(e)
        old, new = plan.edits.get(key, (e.old_value, e.old_value))
        if old != e.old_value:
            raise RewriteError(
                f"the analysis gives entry {e.position} of {_where(e)} on node {e.node!r} ({e.op_type}) "
                f"two different original values, {old} and {e.old_value}"
            )
        if new - delta <= 0 < old and e.op_type not in _MAY_REACH_ZERO:
            raise ConstraintError(
                f"the keep-sets remove every channel counted by entry {e.position} of {_where(e)} of node "
                f"{e.node!r} ({e.op_type}); keep at least one of them"
            )
        plan.edits[key] = (old, new - delta)


def _edit_key(e: ShapeEdit) -> EditKey:
    return (e.node, e.input_index if e.input_index is not None else str(e.attribute), e.position)


def _where(e: ShapeEdit) -> str:
    return f"input {e.input_index}" if e.input_index is not None else f"attribute {e.attribute!r}"


class RemoveChannels(Pass):
    """Delete the planned positions from every tensor and apply the shape edits."""

    def __init__(self, groups: Iterable[CouplingGroup] | object, keep: Mapping[int, object]) -> None:
        self.plan = plan_channel_removal(groups, keep)

    def requires(self, model: OnnxModel) -> None:
        inits = {t.name: t for t in model.graph.initializer}
        for (tensor, axis), pos in self.plan.removals.items():
            t = inits.get(tensor)
            if t is None:
                raise RewriteError(f"the analysis slices tensor {tensor!r}, which is not an initializer of the model")
            if not 0 <= axis < len(t.dims) or (pos.size and not 0 <= pos[0] <= pos[-1] < t.dims[axis]):
                raise RewriteError(
                    f"the analysis removes positions up to {int(pos[-1]) if pos.size else 0} on axis {axis} of "
                    f"tensor {tensor!r}, whose shape is {list(t.dims)}"
                )
            if pos.size >= t.dims[axis]:
                raise ConstraintError(f"the keep-sets remove every position on axis {axis} of tensor {tensor!r}")
        nodes = {n.name for n in model.graph.node}
        for node, _, _ in self.plan.edits:
            if node not in nodes:
                raise RewriteError(f"the analysis edits node {node!r}, which is not in the model's main graph")

    def call(self, model: OnnxModel) -> PassResult:
        if not self.plan.removals and not self.plan.edits:
            return PassResult(model, False)
        out = model.copy()
        graph = out.graph
        cuts: dict[str, list[tuple[int, np.ndarray]]] = {}
        for (name, axis), pos in self.plan.removals.items():
            cuts.setdefault(name, []).append((axis, pos))
        for tensor in graph.initializer:
            if tensor.name in cuts:
                array = tensor_to_array(tensor)
                for axis, pos in cuts[tensor.name]:
                    array = np.delete(array, pos, axis=axis)
                replace_tensor(tensor, array)
                _retype_input(graph, tensor)
        ShapeEditor(out, model).apply(self.plan.edits)
        log.info("removed channels from %d groups, %d tensor axes, %d shape entries",
                 len(self.plan.removed), len(self.plan.removals), len(self.plan.edits))
        return PassResult(out, True)


def _retype_input(graph: onnx.GraphProto, tensor: onnx.TensorProto) -> None:
    """A graph input that shadows the initializer (IR < 4 style) gets its new dims."""
    for value in graph.input:
        if value.name == tensor.name:
            value.CopyFrom(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))


def apply_channel_masks(
    model: OnnxModel, analysis_or_groups: Iterable[CouplingGroup] | object, keep: Mapping[int, object]
) -> OnnxModel:
    """Remove every channel the keep-sets drop and return the new model.

    Args:
        model: the normalised model the analysis was made on; it is not modified.
        analysis_or_groups: an :class:`~smart_onnx.graph.analysis.Analysis` or its groups.
        keep: group id -> kept group channel indices (sorted ints); groups not named keep all.

    Returns:
        A new model: the same nodes, names, opsets and metadata, with smaller tensors
        and shape data; stale ``value_info`` dropped; it passes the full checker and
        strict shape inference.

    Raises:
        ConstraintError: a keep-set is empty, out of range, names an unknown group or
            drops channels of a frozen group (checked before anything is edited).
        RewriteError: the analysis does not fit the model, or the result fails validation.
    """
    return run_passes(model, RemoveChannels(analysis_or_groups, keep), DropStaleValueInfo())
