"""Output roles: what each graph output *is*, read from the graph, so every output is judged by its kind.

A detector's ``[N, 4]`` boxes look like class scores to a rule that only sees shapes,
and a softmax KL on them destroys the box head while the class head stays perfect. So
each output gets a role from evidence in the graph, never from the values of one batch:

- ``class``: scores or probabilities over one axis (``[N, C]``);
- ``sequence``: per-step class scores (``[N, T, C]`` or ``[T, N, C]``, e.g. CTC);
- ``regression``: boxes, landmarks, embeddings, masks, heat maps, anything else;
- ``ignore``: not compared (integer outputs, or the user's choice).

The evidence, in order: the user's override; the dtype; the output's name (``box``,
``landmark``, ``embed``, ... mean regression); the op that produces it (Softmax or
LogSoftmax, through Identity/Cast/Transpose); its rank. The role decides the distillation
term, which metrics ``eval`` reports, and where labels may go.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import onnx

from smart_onnx._atomic import from_fields
from smart_onnx.errors import ConstraintError, DataError
from smart_onnx.graph.view import GraphView, attr, output_ranks
from smart_onnx.model import OnnxModel

__all__ = [
    "OUTPUT_FLOOR",
    "VARIANCE_FLOOR",
    "OutputInfo",
    "OutputRole",
    "infer_output_roles",
    "label_output",
    "parse_role_overrides",
    "variance_floor",
]

# Floors of a regression channel's variance, where the loss divides by it and the per-channel
# cosine standardises by it: a (nearly) constant channel divided by its own variance would turn
# float noise into a dominant term. Relative to the channel's own mean square, and to the
# output's largest channel (for channels that are all zeros); far below the ~1e11 spread of
# variances between boxes in pixels and class scores near 1e-4 that one detector output mixes.
VARIANCE_FLOOR = 1e-4
OUTPUT_FLOOR = 1e-13

_Channels = TypeVar("_Channels")  # a numpy array or a torch tensor: one value per channel


def variance_floor(meansq: _Channels) -> _Channels:
    """Each channel's variance floor from the channels' mean squares, for the loss and the per-channel cosine alike."""
    return VARIANCE_FLOOR * meansq + OUTPUT_FLOOR * float(meansq.max()) + 1e-30


class OutputRole(str, enum.Enum):
    CLASS = "class"
    SEQUENCE = "sequence"
    REGRESSION = "regression"
    IGNORE = "ignore"


@dataclass(frozen=True)
class OutputInfo:
    """One graph output and how it is compared.

    Attributes:
        name: the graph output's name.
        role: see the module docstring.
        reason: why this role (shown by ``inspect`` and written in the report).
        rank: the output's rank, when the graph says it.
        class_axis: class and sequence outputs: the axis the classes run along (non-negative).
        batch_axis: the samples' axis (1 for time-major ``[T, N, C]`` sequences).
        scores: class and sequence outputs: ``logits``, ``probs`` (after Softmax) or ``log_probs``.
    """

    name: str
    role: OutputRole
    reason: str
    rank: int | None = None
    class_axis: int | None = None
    batch_axis: int = 0
    scores: str = "logits"

    @property
    def is_categorical(self) -> bool:
        """Class-like scores: distilled by KL over ``class_axis``, judged by agreement."""
        return self.role in (OutputRole.CLASS, OutputRole.SEQUENCE)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.value, "reason": self.reason, "rank": self.rank,
                "class_axis": self.class_axis, "batch_axis": self.batch_axis,
                "scores": self.scores if self.is_categorical else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputInfo:
        """The inverse of :meth:`to_dict` (``scores`` is written for class and sequence outputs only)."""
        return from_fields(cls, data, role=OutputRole(data["role"]), scores=data["scores"] or "logits")


# Name tokens that mean "not class scores". Matched as whole tokens of the name (split at
# non-letters and camelCase), so "bbox_pred" and "faceLandmarks" match but "global" does not.
_REGRESSION_WORDS = frozenset({
    "box", "boxes", "bbox", "bboxes", "landmark", "landmarks", "lmk", "kps", "keypoint", "keypoints",
    "reg", "regression", "embed", "embeds", "embedding", "embeddings", "loc", "coord", "coords",
    "offset", "offsets", "mask", "masks", "heatmap", "heatmaps", "depth", "hidden", "feature",
    "features", "feat", "pooler", "vector", "distance",
})
# Name tokens that make a rank-3 output without a softmax per-step class scores.
_SEQUENCE_WORDS = frozenset({"logit", "logits", "prob", "probs", "probabilities", "softmax", "ctc"})
_PASS_THROUGH = ("Identity", "Cast", "Transpose")
_SCORES = {"Softmax": "probs", "LogSoftmax": "log_probs"}


def _words(name: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return {w.lower() for w in re.split(r"[^A-Za-z]+", spaced) if w}


def _softmax_axis(view: GraphView, value: str, rank: int | None, opset: int) -> tuple[str, int] | None:
    """(scores kind, axis in ``value``'s coordinates) when ``value`` is a Softmax/LogSoftmax over one axis.

    Follows Identity, Cast and Transpose (mapping the axis through the permutation); any
    other op in between means the values are no longer plain class scores.
    """
    perms: list[list[int]] = []
    node = view.producer(value)
    while node is not None and node.op_type in _PASS_THROUGH:
        if node.op_type == "Transpose":
            perm = attr(node, "perm")
            if perm is None:
                if rank is None:
                    return None
                perm = list(reversed(range(rank)))
            perms.append(list(perm))
        node = view.producer(node.input[0])
    if node is None or node.op_type not in _SCORES or rank is None:
        return None
    axis = int(attr(node, "axis", -1 if opset >= 13 else 1))
    if opset < 13 and axis % rank != rank - 1:
        return None  # before opset 13 a non-last axis means a softmax over the flattened tail, not one axis
    axis %= rank
    for perm in reversed(perms):  # innermost Transpose last: walk from the Softmax out to the output
        axis = perm.index(axis)
    return _SCORES[node.op_type], axis


# Ops that end a classifier head (logits come out of a linear layer, possibly plus a bias); what
# they pass through on the way to the output without changing what the values are.
_LINEAR = frozenset({"Gemm", "MatMul", "Add", "Conv", "Sub"})
_RESHAPING = frozenset({"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _linear_source(view: GraphView, value: str) -> str | None:
    """The producing op when an [N, D] output does not come out of a linear layer (None when it does,
    or when no node makes it): mean pooling (Div, ReduceMean), a pooler's Tanh, a normalisation,
    a Concat of such values are embeddings, whose argmax means nothing."""
    node = view.producer(value)
    while node is not None and node.op_type in _RESHAPING:
        node = view.producer(node.input[0])
    if node is None or node.op_type in _LINEAR:
        return None
    return node.op_type


def _batch_axis(model: OnnxModel, shape: Sequence[int | str]) -> int:
    """1 for a time-major output whose second dim is the inputs' symbolic batch dim, else 0."""
    batch_names = {s.shape[0] for s in model.inputs if s.shape and isinstance(s.shape[0], str)}
    if len(shape) >= 2 and shape[1] in batch_names and shape[0] not in batch_names:
        return 1
    return 0


def _infer(model: OnnxModel, view: GraphView, value: onnx.ValueInfoProto, rank: int | None,
           softmax_elsewhere: str | None) -> OutputInfo:
    spec = next(s for s in model.outputs if s.name == value.name)
    name = value.name
    if not spec.is_float():
        return OutputInfo(name, OutputRole.IGNORE, f"{spec.dtype} values (not scores or measurements)", rank)
    hint = sorted(_words(name) & _REGRESSION_WORDS)
    if hint:
        return OutputInfo(name, OutputRole.REGRESSION, f"the name says {hint[0]!r}", rank)
    found = _softmax_axis(view, name, rank, model.opset)
    if found is not None:
        scores, axis = found
        op = "Softmax" if scores == "probs" else "LogSoftmax"
        if rank == 2 and axis == 1:
            return OutputInfo(name, OutputRole.CLASS, f"{op} over axis 1 of [N, C]", rank, 1, 0, scores)
        if rank == 3 and axis == 2:
            batch = _batch_axis(model, spec.shape)
            layout = "[T, N, C]" if batch else "[N, T, C]"
            return OutputInfo(name, OutputRole.SEQUENCE, f"{op} over the last axis of {layout}", rank, 2, batch,
                              scores)
        return OutputInfo(name, OutputRole.REGRESSION, f"{op} over axis {axis} of a rank-{rank} map", rank)
    if rank == 2 and spec.shape[1] != 1:
        source = _linear_source(view, name)
        if source is not None:
            return OutputInfo(name, OutputRole.REGRESSION,
                              f"[N, D] made by {source}, not a linear head: an embedding or pooled features", rank)
        if softmax_elsewhere is not None:
            return OutputInfo(name, OutputRole.REGRESSION,
                              f"[N, D] without softmax beside the softmax classifier {softmax_elsewhere!r}", rank)
        return OutputInfo(name, OutputRole.CLASS, "[N, C] scores (logits)", rank, 1)
    if rank == 3 and _words(name) & _SEQUENCE_WORDS:
        batch = _batch_axis(model, spec.shape)
        return OutputInfo(name, OutputRole.SEQUENCE, "rank 3 and the name says per-step scores", rank, 2, batch)
    what = "unknown rank" if rank is None else f"rank {rank}" + (" [N, 1]" if rank == 2 else "")
    return OutputInfo(name, OutputRole.REGRESSION, f"{what}, no softmax: compared as values", rank)


def _overridden(info: OutputInfo, role: OutputRole) -> OutputInfo:
    reason = "--output-role"
    if role in (OutputRole.CLASS, OutputRole.SEQUENCE):
        if info.rank is not None and info.rank < 2:
            raise ConstraintError(f"output {info.name!r} has rank {info.rank}; a {role.value} output needs "
                                  f"class scores along an axis (rank 2 or more)")
        axis = info.class_axis if info.is_categorical else (1 if role is OutputRole.CLASS else 2)
        if role is OutputRole.SEQUENCE and info.rank is not None and info.rank != 3:
            raise ConstraintError(f"output {info.name!r} has rank {info.rank}; a sequence output is [N, T, C] "
                                  f"or [T, N, C]")
        return OutputInfo(info.name, role, reason, info.rank, axis, info.batch_axis,
                          info.scores if info.is_categorical else "logits")
    return OutputInfo(info.name, role, reason, info.rank)


def infer_output_roles(model: OnnxModel, overrides: Mapping[str, str] | None = None) -> list[OutputInfo]:
    """The role of every graph output, in graph order.

    Args:
        model: the model.
        overrides: output name -> role name, applied over the inferred roles.

    Raises:
        ConstraintError: an override names an output the model lacks, or an unknown role,
            or a role the output's rank cannot have.
    """
    overrides = dict(overrides or {})
    names = [o.name for o in model.graph.output]
    for name, role in overrides.items():
        if name not in names:
            raise ConstraintError(f"output-role: the model has no output {name!r}; its outputs are {names}")
        if role not in {r.value for r in OutputRole}:
            raise ConstraintError(f"output-role {name}={role}: unknown role; choose one of "
                                  f"{[r.value for r in OutputRole]}")
    view = GraphView(model)
    ranks = output_ranks(model)
    softmax_out = next((o.name for o in model.graph.output
                        if _softmax_axis(view, o.name, ranks.get(o.name), model.opset) is not None), None)
    infos = []
    for value in model.graph.output:
        info = _infer(model, view, value, ranks.get(value.name), softmax_out if softmax_out != value.name else None)
        if value.name in overrides:
            info = _overridden(info, OutputRole(overrides[value.name]))
        infos.append(info)
    return infos


def parse_role_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["boxes=regression", ...]`` -> ``{"boxes": "regression"}`` (the last one wins per name).

    Raises:
        ConstraintError: an item is not NAME=ROLE.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, role = item.rpartition("=")
        if not sep or not name or not role:
            raise ConstraintError(f"output-role {item!r} must be NAME=ROLE, e.g. boxes=regression")
        out[name] = role.strip().lower()
    return out


def label_output(outputs: Sequence[OutputInfo], requested: str | None, have_labels: bool) -> str | None:
    """The output the labels belong to: ``requested``, else the single class output.

    Args:
        outputs: the roles of the model's outputs.
        requested: the user's choice (None: pick the single class output).
        have_labels: whether the data carries labels (without them nothing is refused).

    Returns:
        The output name, or None when there are no labels or no class output to take them.

    Raises:
        DataError: ``requested`` is not a class output of the model, or labels are given
            and several class outputs could take them.
    """
    classes = [o.name for o in outputs if o.role is OutputRole.CLASS]
    if requested is not None:
        if requested not in classes:
            roles = {o.name: o.role.value for o in outputs}
            raise DataError(f"label-output {requested!r} is not a class output of the model (roles: {roles}); "
                            f"set its role to class or name another output")
        return requested
    if not have_labels or not classes:
        return None
    if len(classes) > 1:
        raise DataError(f"the data has labels and the model has {len(classes)} class outputs {classes}; "
                        f"name the one the labels belong to (label-output)")
    return classes[0]
