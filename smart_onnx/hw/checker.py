"""Judge a model against a hardware profile, layer by layer.

The checker reads only the weights and the graph, never what smart-onnx may have
recorded about its own pruning, so it judges any model: one pruned elsewhere, or not at
all. Rules, per prunable layer (rule name in brackets):

* [pattern] the zeros of the weight are a union of aligned blocks of one allowed block
  shape, or every group of M along the input axis holds at least M-N zeros for an allowed
  N:M (see :mod:`smart_onnx.hw.patterns`); a weight without zeros always passes, and an op
  with no allowed pattern must have no zeros.
* [dense] a dense-only layer (``dense_ops``, ``dense_layers``, or one the target's sparse
  kernels do not apply to: :func:`smart_onnx.hw.rules.ineligible`) has no zeros.

Trained models hold exact zeros of their own (a dead channel's weights after BatchNorm
folding underflow to 0). Given the original model, zeros at positions where its weight of
the same shape was already zero are not judged; where shapes differ (removed channels), or
when only the metadata is known, a layer may keep as many zeros outside the allowed patterns
(or, dense-only, at all) as its original weight had.
* [sparsity] the fraction of zero weights is at most ``max_layer_sparsity``.
* [channels] the output-channel count is a multiple of ``channel_alignment`` and at least
  ``min_channels``. Only layers whose channels pruning could change are judged: a layer
  whose coupling group is frozen by the graph (a classifier's 10 outputs feed a graph
  output) passes. An output count the layer already had before pruning also passes (an
  unpruned layer is always acceptable).

``check`` judges every rule; ``prune`` judges its output by the rules its pruning mode
declares (``rules=PruningMode.checker_rules``): removed channels are not held to the block
patterns, zeroed blocks not to the channel alignment.

The original model's channel counts and zero counts come from ``reference``, else from the
``smart_onnx.original_layers`` metadata entry (:func:`record_original`). Without either,
every zero must be in a pattern and every count of a prunable group must comply.

A QDQ model is judged through :func:`smart_onnx.hw.qdq.dequantized_view`: on its integer
weights. Without concrete input shapes the rules are judged from the weights, and what needs
shapes is listed as not judged. Each layer also says whether the target accelerates it
(``LayerCheck.accelerated``: ``check --explain``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from smart_onnx._atomic import Record, from_fields
from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, PrunableLayer, analyze, find_prunable_layers
from smart_onnx.hw.constraints import OpRule, Profile, format_block
from smart_onnx.hw.patterns import nm_problems, stray_zeros
from smart_onnx.hw.qdq import dequantized_view
from smart_onnx.hw.rules import dense_reasons, fit_rank, undecided
from smart_onnx.model import OnnxModel, tensor_to_array

__all__ = [
    "ORIGINAL_KEY", "RULES", "CheckReport", "LayerCheck", "NotJudged", "Violation", "check_model",
    "original_layers", "record_original",
]

log = logging.getLogger(__name__)

RULES = ("pattern", "dense", "sparsity", "channels")
ORIGINAL_KEY = "smart_onnx.original_layers"


@dataclass(frozen=True)
class Violation(Record):
    """One broken rule: the layer, the rule name (one of :data:`RULES`), one sentence."""

    layer: str
    rule: str
    message: str


@dataclass(frozen=True)
class NotJudged(Record):
    """A rule the checker could not decide for a layer, and what it would need (e.g. the input shapes)."""

    layer: str
    rule: str
    reason: str


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
    not_judged: tuple[NotJudged, ...] = ()
    precision: str = "float32"  # the weight's element type: float32, float16, or int8 for a QDQ weight
    # Whether the target runs this layer faster for what was done to it: (yes|no|depends|not judged, reason).
    accelerated: tuple[str, str] = ("", "")

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "op_type": self.op_type, "weight": self.weight, "shape": list(self.shape),
            "out_channels": self.out_channels, "sparsity": self.sparsity, "pattern": self.pattern,
            "dense_only": self.dense_only, "passed": self.passed, "precision": self.precision,
            "accelerated": self.accelerated[0], "why": self.accelerated[1],
            "violations": [v.to_dict() for v in self.violations],
            "not_judged": [n.to_dict() for n in self.not_judged],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerCheck:
        """The inverse of :meth:`to_dict`."""
        return from_fields(cls, data, shape=tuple(data["shape"]), accelerated=(data["accelerated"], data["why"]),
                           violations=tuple(Violation.from_dict(v) for v in data["violations"]),
                           not_judged=tuple(NotJudged.from_dict(n) for n in data["not_judged"]))


@dataclass(frozen=True)
class CheckReport:
    """Every layer's verdict under one profile.

    Attributes:
        rules: the rules judged (names of :data:`RULES`): all of them for ``check``, those a pruning
            mode declares for ``prune`` (a channel-pruned model is not judged by the block-pattern rules).
    """

    profile: str
    layers: tuple[LayerCheck, ...]
    notes: tuple[str, ...] = ()
    rules: tuple[str, ...] = RULES

    @property
    def violations(self) -> list[Violation]:
        return [v for layer in self.layers for v in layer.violations]

    @property
    def not_judged(self) -> list[NotJudged]:
        return [n for layer in self.layers for n in layer.not_judged]

    @property
    def passed(self) -> bool:
        """No rule is broken (rules that could not be judged are listed in :attr:`not_judged`)."""
        return all(layer.passed for layer in self.layers)

    def to_dict(self) -> dict[str, object]:
        """The JSON object; ``rules`` only where some rules were not judged (reports before it judged them all)."""
        out: dict[str, object] = {"profile": self.profile}
        if self.rules != RULES:
            out["rules"] = list(self.rules)
        return {
            **out, "passed": self.passed, "layers": [lay.to_dict() for lay in self.layers],
            "violations": [v.to_dict() for v in self.violations],
            "not_judged": [n.to_dict() for n in self.not_judged], "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckReport:
        """The inverse of :meth:`to_dict` (``passed``, ``violations`` and ``not_judged`` are derived)."""
        return cls(data["profile"], tuple(LayerCheck.from_dict(lay) for lay in data["layers"]), tuple(data["notes"]),
                   tuple(data.get("rules", RULES)))


def check_model(
    model: OnnxModel,
    profile: Profile,
    *,
    analysis: Analysis | None = None,
    reference: OnnxModel | None = None,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    rules: Collection[str] | None = None,
) -> CheckReport:
    """Check every prunable layer of ``model`` against ``profile``.

    Args:
        model: the model to judge (any model, pruned by smart-onnx or not).
        profile: the target.
        analysis: the model's analysis, if already computed (its layers and groups).
        reference: the model before pruning: output-channel counts it already had pass,
            and each layer may keep as many stray zeros as its original weight had.
        input_shapes: concrete input shapes for the analysis (symbolic dims).
        rules: the rules to judge, names of :data:`RULES` (None: all of them); a pruned model is judged by
            those its pruning mode declares (``PruningMode.checker_rules``).

    Returns:
        The per-layer verdicts; ``report.passed`` is True when no rule is broken.

    Without concrete input shapes (symbolic non-batch dims and no ``input_shapes``) the
    structural rules are still judged from the weights alone: patterns, dense layers,
    sparsity, and channel counts that are aligned or the original's. What needs activation
    shapes is listed in ``report.not_judged`` instead: a misaligned count (whether the graph
    fixes that layer's channels is traced through activation shapes).

    Raises:
        GraphError: ``input_shapes`` were given but do not resolve every symbolic dim.
        ConstraintError: a rule that is not one of :data:`RULES`.
    """
    judged = _judged_rules(rules)
    model, quantized = dequantized_view(model)
    if quantized:
        analysis = None  # the caller's analysis is of another graph
    shapeless = analysis is None and not input_shapes and _symbolic_inputs(model)
    if analysis is None and not shapeless:
        analysis = analyze(model, input_shapes)
    layers = list(analysis.layers) if analysis is not None else find_prunable_layers(model)
    dense = dense_reasons(profile, layers)
    originals, note = _originals(model, reference)
    frozen = _frozen_layers(analysis) if analysis is not None else _output_layers(model, layers)
    initializers = model.initializers
    reference_weights = _weights_by_layer(reference) if reference is not None else {}
    results = []
    for layer in layers:
        weight = tensor_to_array(initializers[layer.weight])
        ref = tensor_to_array(reference_weights[layer.name]) if layer.name in reference_weights else None
        ignore = None
        if ref is not None and ref.shape == weight.shape:
            ignore = ref == 0
        precision = quantized[layer.weight].dtype if layer.weight in quantized else str(weight.dtype)
        results.append(_check_layer(layer, weight, profile, dense.get(layer.name), frozen.get(layer.name),
                                    originals.get(layer.name), ignore, judged, shapeless=bool(shapeless),
                                    precision=precision))
    notes = (note,)
    if quantized:
        notes += (f"QDQ model: {len(quantized)} weights read from their DequantizeLinear nodes and judged on the "
                  "integer values (a weight is zero where its integer equals the zero point)",)
    if shapeless:
        notes += (f"no concrete input shapes ({shapeless}): rules were judged from the weights alone; "
                  "those that need activation shapes are listed as not judged",)
    report = CheckReport(profile.name, tuple(results), notes, judged)
    log.info("check against %s: %d of %d layers comply", profile.name,
             sum(r.passed for r in results), len(results))
    return report


def _judged_rules(rules: Collection[str] | None) -> tuple[str, ...]:
    """``rules`` once each, in the caller's order (None: all of :data:`RULES`).

    Raises:
        ConstraintError: a name that is not one of :data:`RULES`.
    """
    if rules is None:
        return RULES
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise ConstraintError(f"`rules` names no checker rule {', '.join(map(repr, unknown))}; the rules are "
                              f"{', '.join(RULES)}", parameters=("rules",))
    return tuple(dict.fromkeys(rules))


# Ops that carry a layer's output channels to their output unchanged in number (elementwise, activations).
_CHANNEL_PRESERVING = frozenset({
    "Identity", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Clip", "Elu", "Selu",
    "Gelu", "Softplus", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Cast", "Dropout",
})


def _output_layers(model: OnnxModel, layers: list[PrunableLayer]) -> dict[str, str]:
    """Without activation shapes: layers whose output reaches a graph output through channel-preserving ops only.

    Their channel count is the graph output's, which no pruning can change (a classifier's
    10 logits), so it is not held to the alignment. Anything less direct needs the traced
    analysis, which needs shapes.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes = {n.name: n for n in model.graph.node}
    outputs = {o.name for o in model.graph.output}
    found = {}
    for layer in layers:
        value = nodes[layer.name].output[0]
        for _ in range(len(nodes)):
            if value in outputs:
                found[layer.name] = f"its channels reach graph output {value!r}"
                break
            after = consumers.get(value, [])
            if len(after) != 1 or after[0].op_type not in _CHANNEL_PRESERVING:
                break
            value = after[0].output[0]
    return found


def _symbolic_inputs(model: OnnxModel) -> str:
    """'x: 1x3x48xW, ...' for the inputs with a symbolic dim beyond the batch axis ('' when none)."""
    found = [f"{s.name}: " + "x".join(str(d) for d in s.shape) for s in model.inputs
             if any(not (isinstance(d, int) and d > 0) for d in s.shape[1:])]
    return ", ".join(found)


def _weights_by_layer(model: OnnxModel) -> dict[str, onnx.TensorProto]:
    """Prunable layer name -> its weight tensor (a QDQ model's as dequantized integers), read as each layer is
    judged: as arrays all at once they were a copy of the reference's weights for the whole check."""
    view, _ = dequantized_view(model)
    initializers = view.initializers
    return {lay.name: initializers[lay.weight] for lay in find_prunable_layers(view)}


def original_layers(model: OnnxModel) -> dict[str, dict[str, int]]:
    """Per prunable layer: its output-channel count and the exact zeros its weight holds (QDQ weights read)."""
    view, _ = dequantized_view(model)
    initializers = view.initializers
    return {lay.name: {"out_channels": lay.out_channels,
                       "zeros": int(np.count_nonzero(tensor_to_array(initializers[lay.weight]) == 0))}
            for lay in find_prunable_layers(view)}


def record_original(proto: onnx.ModelProto, original: OnnxModel) -> None:
    """Write :func:`original_layers` of the model before pruning into ``proto``'s metadata.

    ``check`` then judges the pruned model as if given ``reference=original``: counts the
    layers already had pass, and so do the zeros the original weights already held.
    """
    value = json.dumps(original_layers(original), sort_keys=True)
    for entry in proto.metadata_props:
        if entry.key == ORIGINAL_KEY:
            entry.value = value
            return
    proto.metadata_props.add(key=ORIGINAL_KEY, value=value)


def _originals(model: OnnxModel, reference: OnnxModel | None) -> tuple[dict[str, dict[str, int]], str]:
    if reference is not None:
        return original_layers(reference), "judged against the reference model: its channel counts and zeros pass"
    for entry in model.proto.metadata_props:
        if entry.key == ORIGINAL_KEY:
            try:
                data = {str(k): {"out_channels": int(v["out_channels"]), "zeros": int(v["zeros"])}
                        for k, v in json.loads(entry.value).items()}
                return data, "judged against the original recorded in the metadata: its channel counts and zeros pass"
            except (ValueError, TypeError, KeyError, AttributeError):
                log.warning("ignoring malformed %s metadata entry", ORIGINAL_KEY)
    return {}, ("no original model (no --reference, no metadata): every zero must be in an allowed pattern and "
                "every output-channel count of a prunable group aligned and above the minimum")


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
    original: Mapping[str, int] | None, ignore: np.ndarray | None, rules: tuple[str, ...], *,
    shapeless: bool = False, precision: str = "float32",
) -> LayerCheck:
    zero = weight == 0
    zeros = int(np.count_nonzero(zero))
    sparsity = zeros / zero.size if zero.size else 0.0
    # Zeros the original already had: by position (ignore) when known, else by count.
    allowance = 0 if ignore is not None or not original else original["zeros"]
    new = zeros if ignore is None else int(np.count_nonzero(zero & ~ignore))
    what = f"layer {layer.name!r} ({layer.op_type}, weight {layer.weight!r})"
    problems: list[tuple[str, str]] = []
    if dense is not None:
        pattern = "dense" if new <= allowance else "unstructured"
        if new > allowance:
            problems.append(("dense", f"{what} must stay dense ({dense}), but {zeros} of {zero.size} weights are zero"
                             + (f" (the original had {allowance})" if allowance else "")))
    else:
        pattern, problem = _pattern(layer, zero, (new, allowance, ignore), profile.rule_for(layer.op_type))
        if problem:
            problems.append(("pattern", f"{what} {problem}"))
    if sparsity > profile.max_layer_sparsity + 1e-12:
        problems.append(("sparsity", f"{what} is {sparsity:.1%} zeros, more than the profile's max_layer_sparsity "
                                     f"{profile.max_layer_sparsity:.1%}"))
    unknown: list[tuple[str, str]] = []
    open_question = undecided(profile, layer)
    if open_question and new > allowance:
        unknown.append(("dense", f"{new} zero weights are allowed only if the target's sparse kernels apply: "
                                 f"{open_question}"))
    channel_problem = _channel_problem(layer.out_channels, profile, frozen,
                                       original["out_channels"] if original else None)
    if channel_problem and shapeless:
        unknown.append(("channels", f"{layer.out_channels} output channels, {channel_problem}, unless the graph "
                                    "fixes them (a graph output, a reshape): that is traced on activation shapes"))
    elif channel_problem:
        problems.append(("channels", f"{what} has {layer.out_channels} output channels, {channel_problem}"))
    return LayerCheck(
        name=layer.name, op_type=layer.op_type, weight=layer.weight, shape=tuple(weight.shape),
        out_channels=layer.out_channels, sparsity=sparsity, pattern=pattern, dense_only=dense is not None,
        violations=tuple(Violation(layer.name, rule, msg) for rule, msg in problems if rule in rules),
        not_judged=tuple(NotJudged(layer.name, rule, why) for rule, why in unknown if rule in rules),
        precision=precision,
        accelerated=_accelerated(layer, profile, dense, pattern, precision, open_question),
    )


def _accelerated(layer: PrunableLayer, profile: Profile, dense: str | None, pattern: str, precision: str,
                 open_question: str | None) -> tuple[str, str]:
    """Does the target accelerate this layer, and why (not)? ``(yes|no|depends|not judged, reason)``."""
    rule = profile.rule_for(layer.op_type)
    wanted = profile.precisions
    if not any(r.allows_sparsity for _, r in profile.ops):
        align, count = profile.channel_alignment, layer.out_channels
        if precision not in wanted and wanted:
            return "no", f"{precision} weights: the target's kernels run {', '.join(wanted)}"
        if align > 1 and count % align:
            return "no", (f"dense kernels; {count} output channels are not a multiple of {align}, so the last "
                          f"block of {align} is padded")
        return "yes", (f"dense kernels; {count} output channels fill whole blocks of {align}" if align > 1
                       else "dense kernels")
    if not rule.allows_sparsity:
        covered = [op for op, r in profile.ops if r.allows_sparsity]
        return "no", f"unsupported op: the target's sparse kernels cover {', '.join(covered)}, not {layer.op_type}"
    if dense is not None:
        return "no", dense.removeprefix("the target's sparse kernels do not apply: ")
    if open_question and pattern != "dense":
        return "not judged", open_question
    if pattern == "dense":
        return "no", "dense weights: no zeros to skip"
    if pattern == "unstructured":
        return "no", "its zeros fit no pattern the target accelerates"
    if wanted and precision not in wanted:
        floats = [p for p in wanted if p.startswith(("float", "bfloat"))]
        if precision.startswith("float") and floats:
            return "depends", (f"{pattern} on {precision} weights: the sparse kernels run in {', '.join(wanted)}; "
                               f"yes when the engine is built in {' or '.join(wanted)}")
        return "no", f"{precision} weights: the sparse kernels run in {', '.join(wanted)} only"
    return "yes", f"{pattern}, {precision}"


def _pattern(
    layer: PrunableLayer, zero: np.ndarray, original: tuple[int, int, np.ndarray | None], rule: OpRule
) -> tuple[str, str | None]:
    """(pattern found, problem or None) for a layer that may be sparse.

    ``original`` is (zeros not in ``ignore``, how many stray zeros pass, zeros of the
    original weight by position or None).
    """
    zeros, allowance, ignore = original
    if zeros <= allowance:
        return "dense", None
    if not rule.allows_sparsity:
        return "unstructured", (f"has {zeros} zero weights, but the profile allows no sparse pattern for "
                                f"{layer.op_type} (dense weights or removed channels only)")
    canonical = np.transpose(zero, layer.canonical_axes)
    ignored = None if ignore is None else np.transpose(ignore, layer.canonical_axes)
    stray = {}
    for block in rule.blocks:
        stray[block] = stray_zeros(canonical, fit_rank(block, canonical.ndim), ignored)
        if stray[block] <= allowance:
            return f"block {format_block(block)}", None
    nm_bad = {}
    for n, m in rule.nm:
        too_dense, groups, tail = nm_problems(zero, layer.in_axis, n, m, ignore)
        if too_dense == 0 and tail <= allowance:
            return f"{n}:{m}", None
        nm_bad[(n, m)] = (too_dense, groups, tail)
    its = f"its {zeros} zeros" + (" the original did not have" if ignore is not None else "")
    found = [f"{stray[b]} of {its} lie in {format_block(b)} blocks that are not all zero" for b in rule.blocks]
    found += [f"{bad} of {groups} groups of {m} along the input axis keep more than {n} non-zeros"
              + (f" and {tail} zeros lie in the ragged tail that {n}:{m} hardware runs dense" if tail else "")
              for (n, m), (bad, groups, tail) in nm_bad.items()]
    extra = f" (the original had {allowance} zeros)" if allowance else ""
    return "unstructured", "has zeros in no allowed pattern: " + "; ".join(found) + extra


def _channel_problem(count: int, profile: Profile, frozen: str | None, original: int | None) -> str | None:
    if frozen is not None or count == original:
        return None
    problems = []
    if count % profile.channel_alignment:
        problems.append(f"not a multiple of the profile's channel_alignment {profile.channel_alignment}")
    if count < profile.min_channels:
        problems.append(f"fewer than the profile's min_channels {profile.min_channels}")
    return " and ".join(problems) or None
