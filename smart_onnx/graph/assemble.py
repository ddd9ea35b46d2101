"""Turn the propagation records of a :class:`~smart_onnx.graph.coupling.Tracer` into coupling groups."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from smart_onnx.graph.channel_rules import apply_rule
from smart_onnx.graph.coupling import Tracer
from smart_onnx.graph.groups import CouplingGroup, Role, ShapeEdit, TensorSlice
from smart_onnx.graph.index_map import fit_map
from smart_onnx.graph.layers import PrunableLayer
from smart_onnx.graph.shape_trace import freeze_unsafe_shape_reads
from smart_onnx.graph.view import GraphView

__all__ = ["build_groups"]

log = logging.getLogger(__name__)

_WEIGHT_ROLES = (Role.PRODUCER_WEIGHT, Role.CONSUMER_WEIGHT, Role.DEPTHWISE_WEIGHT)


def build_groups(
    view: GraphView, layers: Sequence[PrunableLayer], shapes: Mapping[str, tuple[int, ...]],
    missing: set[str] | None = None,
) -> list[CouplingGroup]:
    """Coupling groups for ``layers`` (see :mod:`smart_onnx.graph.coupling` for how).

    Args:
        view: the graph.
        layers: its prunable layers (:func:`~smart_onnx.graph.layers.find_prunable_layers`).
        shapes: value shapes (:func:`~smart_onnx.graph.view.value_shapes`).
        missing: if given, receives the values whose unknown shape decided something (a
            freeze, or a rule that could not run); measuring them may give a better answer.

    Returns:
        One group per set of tied output channels, ordered by first root layer in graph
        order; ``groups[i].id == i``. Problems freeze groups; they never raise.
    """
    tracer = Tracer(view, layers, shapes)
    for node in view.nodes:
        apply_rule(tracer, node)
    freeze_unsafe_shape_reads(tracer)
    _freeze_escapes(tracer)
    _freeze_shared_constants(tracer)
    if missing is not None:
        missing |= tracer.missing
    return _Assembler(tracer).groups()


def _freeze_escapes(t: Tracer) -> None:
    """Channels that leave the main graph cannot change: graph outputs and subgraph reads."""
    for name in t.view.outputs:
        if (lay := t.layout(name)) is not None:
            producer = t.view.producer(name)
            origin = f" (written by node {producer.name!r}, {producer.op_type})" if producer is not None else ""
            t.freeze(lay.owners, f"its channels reach graph output {name!r}{origin}")
    for name in sorted(t.view.subgraph_reads):
        if (lay := t.layout(name)) is not None:
            t.freeze(lay.owners, f"value {name!r} carrying its channels is read inside an If/Loop/Scan body")


def _freeze_shared_constants(t: Tracer) -> None:
    """A constant several nodes read can be sliced only if every reader slices it the same way
    (torch de-duplicates equal parameters, e.g. fresh LayerNorm weights, behind Identity nodes).

    Cuts by frozen channels never happen, so they are not compared: a tied embedding read by the
    Gather (its columns: the hidden channels) and by the LM head (also its rows: the vocabulary, frozen
    at the logits) is cut the same way by both on the one axis that can lose positions.
    """
    by_tensor: dict[str, list] = defaultdict(list)
    for rec in t.slices:
        if rec.role not in (Role.ACTIVATION, Role.STATISTICS) and not _all_frozen(t, rec.owners):
            by_tensor[rec.tensor].append(rec)
    for tensor, recs in by_tensor.items():
        per_node: dict[str, dict[int, tuple[int, ...]]] = defaultdict(dict)
        for rec in recs:
            per_node[rec.node][rec.axis] = tuple(t.find(o) if o >= 0 else -1 for o in rec.owners.tolist())
        stray = [n for n in _readers(t.view, tensor) if n.name not in per_node]
        cuts = list(per_node.values())
        if stray:
            why = f"is also read by node {stray[0].name!r} ({stray[0].op_type})"
        elif any(c != cuts[0] for c in cuts):
            why = "is read by nodes that would cut it differently"
        else:
            continue
        for rec in recs:
            t.freeze(rec.owners, f"initializer {tensor!r} {why}, so it cannot be sliced for node {rec.node!r}")


def _all_frozen(t: Tracer, owners: np.ndarray) -> bool:
    spaces = np.unique(t.space_index(np.asarray(owners, dtype=np.int64))).tolist()
    return bool(spaces) and all(t.spaces[i].frozen is not None for i in spaces)


def _readers(view: GraphView, value: str) -> list:
    """Nodes reading ``value``, looking through Identity/Transpose chains."""
    out = []
    for node, _ in view.consumers(value):
        if node.op_type in ("Identity", "Transpose"):
            out.extend(_readers(view, node.output[0]))
        else:
            out.append(node)
    return out


class _Assembler:
    def __init__(self, t: Tracer) -> None:
        self.t = t
        n = len(t.parent)
        self.root = np.asarray([t.find(i) for i in range(n)], dtype=np.int64)  # the smallest node of its class
        sizes = [s.size for s in t.spaces]
        space_of = np.repeat(np.arange(len(t.spaces), dtype=np.int64), sizes)
        comp = _components(len(t.spaces), zip(space_of.tolist(), space_of[self.root].tolist()))
        first: dict[int, int] = {}
        for i, space in enumerate(t.spaces):
            if space.layer is not None and comp[i] not in first:
                first[comp[i]] = len(first)
        self.n_groups = len(first)
        self.comp_spaces = [[i for i in range(len(t.spaces)) if first.get(comp[i]) == g] for g in range(len(first))]
        self.group_of = np.asarray([first.get(comp[s], -1) for s in space_of.tolist()], dtype=np.int64)
        self.channel_of = np.full(n, -1, dtype=np.int64)
        self.channels = np.zeros(self.n_groups, dtype=np.int64)
        for g in range(self.n_groups):
            nodes = np.nonzero(self.group_of == g)[0]
            classes, index = np.unique(self.root[nodes], return_inverse=True)
            self.channel_of[nodes] = index
            self.channels[g] = len(classes)

    def split(self, owners: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Group -> (group channel, position) pairs of an owners array."""
        pos = np.nonzero(owners >= 0)[0]
        groups = self.group_of[owners[pos]]
        out = {}
        for g in np.unique(groups[groups >= 0]).tolist():
            p = pos[groups == g]
            out[g] = (self.channel_of[owners[p]], p)
        return out

    def groups(self) -> list[CouplingGroup]:
        t = self.t
        slices: list[list[TensorSlice]] = [[] for _ in range(self.n_groups)]
        params = [np.zeros(c, dtype=np.int64) for c in self.channels]
        macs = [np.zeros(c, dtype=np.int64) for c in self.channels]
        seen: set[tuple] = set()
        for rec in t.slices:
            for g, (ch, pos) in self.split(rec.owners).items():
                key = (g, rec.tensor, rec.axis, rec.role, rec.node)
                if key in seen:
                    continue
                seen.add(key)
                size = len(rec.owners)
                s = TensorSlice(rec.tensor, rec.axis, size, fit_map(ch, pos, int(self.channels[g])), rec.role, rec.node)
                slices[g].append(s)
                counts = np.bincount(ch, minlength=int(self.channels[g]))
                if rec.role.counts_weights:
                    params[g] += counts * (int(np.prod(t.shape(rec.tensor) or (0,))) // max(size, 1))
                layer = t.layers.get(rec.node)
                if rec.role in _WEIGHT_ROLES and layer is not None and layer.macs is not None:
                    macs[g] += counts * (layer.macs // max(size, 1))
        edits: list[dict[tuple, ShapeEdit]] = [{} for _ in range(self.n_groups)]
        for rec in t.edits:
            e = rec.edit
            for g, (ch, pos) in self.split(rec.owners).items():
                # One entry edited twice (a shape Concat feeding two Reshapes) must count once.
                key = (e.node, e.input_index, e.attribute, e.position)
                if key not in edits[g]:
                    edits[g][key] = replace(e, index_map=fit_map(ch, pos, int(self.channels[g])))
        return [self._group(g, slices[g], list(edits[g].values()), params[g], macs[g]) for g in range(self.n_groups)]

    def _group(self, g: int, slices: list[TensorSlice], edits: list[ShapeEdit], params, macs) -> CouplingGroup:
        spaces = [self.t.spaces[i] for i in self.comp_spaces[g]]
        order = {name: i for i, name in enumerate(self.t.layers)}
        members = {s.node for s in slices if s.role in _WEIGHT_ROLES and s.node in order}
        frozen = next((s.frozen for s in spaces if s.frozen is not None), None)
        return CouplingGroup(
            id=g,
            channels=int(self.channels[g]),
            roots=tuple(s.layer for s in spaces if s.layer is not None),
            layers=tuple(sorted(members, key=order.__getitem__)),
            slices=tuple(s for s in slices if s.constant),
            values=tuple(s for s in slices if s.role is Role.ACTIVATION),
            statistics=tuple(s for s in slices if s.role is Role.STATISTICS),
            edits=tuple(edits),
            channel_params=tuple(int(x) for x in params),
            channel_macs=tuple(int(x) for x in macs),
            frozen=frozen,
        )


def _components(n: int, pairs) -> list[int]:
    """Connected-component label per item, given linked pairs."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in set(pairs):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]
