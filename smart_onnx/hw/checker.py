"""Judge a model against a hardware profile, layer by layer.

The checker reads only the weights and the graph, never what smart-onnx may have
recorded about its own pruning, so it judges any model: one pruned elsewhere, or not at
all. Rules, per prunable layer (rule name in brackets):

* [pattern] the zeros of the weight are a union of aligned blocks of one allowed block
  shape, or every group of M along the input axis holds at least M-N zeros for an allowed
  N:M (see :mod:`smart_onnx.hw.patterns`); a weight without zeros always passes, and an op
  with no allowed pattern must have no zeros.
* [dense] a dense-only layer (``dense_ops``, ``dense_layers``) has no zeros.
* [sparsity] the fraction of zero weights is at most ``max_layer_sparsity``.
* [channels] the output-channel count is a multiple of ``channel_alignment`` and at least
  ``min_channels``. Only layers whose channels pruning could change are judged: a layer
  whose coupling group is frozen by the graph (a classifier's 10 outputs feed a graph
  output) passes. An output count the layer already had before pruning also passes (an
  unpruned layer is always acceptable); the original counts come from ``reference`` or
  from the ``smart_onnx.original_channels`` metadata entry (:func:`record_original_channels`).
  Without either, every count of a prunable group must comply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from smart_onnx.graph import Analysis, PrunableLayer, analyze, find_prunable_layers
from smart_onnx.hw.constraints import OpRule, Profile, format_block
from smart_onnx.hw.patterns import nm_problems, stray_zeros
from smart_onnx.hw.rules import dense_reasons, fit_rank
from smart_onnx.model import OnnxModel, tensor_to_array

__all__ = [
    "ORIGINAL_CHANNELS_KEY", "RULES", "CheckReport", "LayerCheck", "Violation", "check_model",
    "record_original_channels",
]

log = logging.getLogger(__name__)

RULES = ("pattern", "dense", "sparsity", "channels")
ORIGINAL_CHANNELS_KEY = "smart_onnx.original_channels"


@dataclass(frozen=True)
class Violation:
    """One broken rule: the layer, the rule name (one of :data:`RULES`), one sentence."""

    layer: str
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class LayerCheck:
    """The verdict on one prunable layer.

    Attributes:
        pattern: what the zeros look like: ``dense`` (none), ``block 16x8x1x1`` (the
            allowed block they comply with), ``2:4``, or ``unstructured``.
        sparsity: fraction of zero weights.
        violations: the rules it breaks (empty when it complies).
    """

    name: str
    op_type: str
    weight: str
    shape: tuple[int, ...]
    out_channels: int
    sparsity: float
    pattern: str
    dense_only: bool
    violations: tuple[Violation, ...]

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "op_type": self.op_type, "weight": self.weight, "shape": list(self.shape),
            "out_channels": self.out_channels, "sparsity": self.sparsity, "pattern": self.pattern,
            "dense_only": self.dense_only, "passed": self.passed,
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass(frozen=True)
class CheckReport:
    """Every layer's verdict under one profile."""

    profile: str
    layers: tuple[LayerCheck, ...]
    notes: tuple[str, ...] = ()

    @property
    def violations(self) -> list[Violation]:
        return [v for layer in self.layers for v in layer.violations]

    @property
    def passed(self) -> bool:
        return all(layer.passed for layer in self.layers)

    def to_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile, "passed": self.passed, "layers": [lay.to_dict() for lay in self.layers],
            "violations": [v.to_dict() for v in self.violations], "notes": list(self.notes),
        }


def check_model(
    model: OnnxModel,
    profile: Profile,
    *,
    analysis: Analysis | None = None,
    reference: OnnxModel | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> CheckReport:
    """Check every prunable layer of ``model`` against ``profile``.

    Args:
        model: the model to judge (any model, pruned by smart-onnx or not).
        profile: the target.
        analysis: the model's analysis, if already computed (its layers and groups).
        reference: the model before pruning; output-channel counts it already had pass.
        input_shapes: concrete input shapes for the analysis (symbolic dims).

    Returns:
        The per-layer verdicts; ``report.passed`` is True when the model complies.

    Raises:
        GraphError: the model has symbolic non-batch input dims and no ``input_shapes``.
    """
    analysis = analysis if analysis is not None else analyze(model, input_shapes)
    layers = list(analysis.layers)
    dense = dense_reasons(profile, layers)
    originals, note = _original_channels(model, reference)
    frozen = _frozen_layers(analysis)
    initializers = model.initializers
    results = []
    for layer in layers:
        weight = tensor_to_array(initializers[layer.weight])
        results.append(_check_layer(layer, weight, profile, dense.get(layer.name), frozen.get(layer.name),
                                    originals.get(layer.name)))
    report = CheckReport(profile.name, tuple(results), (note,))
    log.info("check against %s: %d of %d layers comply", profile.name,
             sum(r.passed for r in results), len(results))
    return report


def record_original_channels(proto: onnx.ModelProto, original: OnnxModel | Sequence[PrunableLayer]) -> None:
    """Write each layer's output-channel count before pruning into ``proto``'s metadata.

    ``check`` then accepts those counts as they are (an unpruned layer always complies)
    without being given the original model.
    """
    layers = find_prunable_layers(original) if isinstance(original, OnnxModel) else original
    value = json.dumps({lay.name: lay.out_channels for lay in layers}, sort_keys=True)
    for entry in proto.metadata_props:
        if entry.key == ORIGINAL_CHANNELS_KEY:
            entry.value = value
            return
    proto.metadata_props.add(key=ORIGINAL_CHANNELS_KEY, value=value)


def _original_channels(model: OnnxModel, reference: OnnxModel | None) -> tuple[dict[str, int], str]:
    if reference is not None:
        return ({lay.name: lay.out_channels for lay in find_prunable_layers(reference)},
                "output-channel counts the reference model already had are accepted as they are")
    for entry in model.proto.metadata_props:
        if entry.key == ORIGINAL_CHANNELS_KEY:
            try:
                data = json.loads(entry.value)
                return ({str(k): int(v) for k, v in data.items()},
                        "output-channel counts recorded as original in the model's metadata are accepted as they are")
            except (ValueError, TypeError, AttributeError):
                log.warning("ignoring malformed %s metadata entry", ORIGINAL_CHANNELS_KEY)
    return {}, ("no original channel counts (no reference model, no metadata): every output-channel count "
                "of a prunable group must be aligned and above the minimum")


def _frozen_layers(analysis: Analysis) -> dict[str, str]:
    """Layers whose output channels are fixed by the graph, with the reason."""
    out = {}
    for layer in analysis.layers:
        try:
            group = analysis.group_of(layer.name)
        except KeyError:
            out[layer.name] = "its output channels belong to no coupling group"
            continue
        if group.frozen is not None:
            out[layer.name] = group.frozen
    return out


def _check_layer(
    layer: PrunableLayer, weight: np.ndarray, profile: Profile, dense: str | None, frozen: str | None,
    original: int | None,
) -> LayerCheck:
    zero = weight == 0
    zeros = int(np.count_nonzero(zero))
    sparsity = zeros / zero.size if zero.size else 0.0
    what = f"layer {layer.name!r} ({layer.op_type}, weight {layer.weight!r})"
    problems: list[tuple[str, str]] = []
    if dense is not None:
        pattern = "dense" if zeros == 0 else "unstructured"
        if zeros:
            problems.append(("dense", f"{what} must stay dense ({dense}), but {zeros} of {zero.size} weights are zero"))
    else:
        pattern, problem = _pattern(layer, zero, zeros, profile.rule_for(layer.op_type))
        if problem:
            problems.append(("pattern", f"{what} {problem}"))
    if sparsity > profile.max_layer_sparsity + 1e-12:
        problems.append(("sparsity", f"{what} is {sparsity:.1%} zeros, more than the profile's max_layer_sparsity "
                                     f"{profile.max_layer_sparsity:.1%}"))
    channel_problem = _channel_problem(layer.out_channels, profile, frozen, original)
    if channel_problem:
        problems.append(("channels", f"{what} has {layer.out_channels} output channels, {channel_problem}"))
    return LayerCheck(
        name=layer.name, op_type=layer.op_type, weight=layer.weight, shape=tuple(weight.shape),
        out_channels=layer.out_channels, sparsity=sparsity, pattern=pattern, dense_only=dense is not None,
        violations=tuple(Violation(layer.name, rule, msg) for rule, msg in problems),
    )


def _pattern(layer: PrunableLayer, zero: np.ndarray, zeros: int, rule: OpRule) -> tuple[str, str | None]:
    """(pattern found, problem or None) for a layer that may be sparse."""
    if zeros == 0:
        return "dense", None
    if not rule.allows_sparsity:
        return "unstructured", (f"has {zeros} zero weights, but the profile allows no sparse pattern for "
                                f"{layer.op_type} (dense weights or removed channels only)")
    canonical = np.transpose(zero, layer.canonical_axes)
    stray = {}
    for block in rule.blocks:
        stray[block] = stray_zeros(canonical, fit_rank(block, canonical.ndim))
        if stray[block] == 0:
            return f"block {format_block(block)}", None
    nm_bad = {}
    for n, m in rule.nm:
        too_dense, groups, tail = nm_problems(zero, layer.in_axis, n, m)
        if too_dense == 0 and tail == 0:
            return f"{n}:{m}", None
        nm_bad[(n, m)] = (too_dense, groups, tail)
    found = [f"{stray[b]} of its {zeros} zeros lie in {format_block(b)} blocks that are not all zero"
             for b in rule.blocks]
    found += [f"{bad} of {groups} groups of {m} along the input axis keep more than {n} non-zeros"
              + (f" and {tail} zeros lie in the ragged tail that {n}:{m} hardware runs dense" if tail else "")
              for (n, m), (bad, groups, tail) in nm_bad.items()]
    return "unstructured", "has zeros in no allowed pattern: " + "; ".join(found)


def _channel_problem(count: int, profile: Profile, frozen: str | None, original: int | None) -> str | None:
    if frozen is not None or count == original:
        return None
    problems = []
    if count % profile.channel_alignment:
        problems.append(f"not a multiple of the profile's channel_alignment {profile.channel_alignment}")
    if count < profile.min_channels:
        problems.append(f"fewer than the profile's min_channels {profile.min_channels}")
    return " and ".join(problems) or None
