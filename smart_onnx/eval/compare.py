"""``smart-onnx eval`` as a library call: a candidate model against its reference.

Accuracy side (onnxruntime, :func:`smart_onnx.eval.ort.evaluate`): cosine similarity and
relative error per output, top-1 agreement and accuracy for class-like outputs, median
latency. Size side: nonzero and total float weights, and per prunable layer (matched by
node name) weights and MACs. MACs of a layer are *effective* MACs: the dense MACs at the
layer's shape times the density of its weight, so zeroed blocks count as skipped work (an
NPU with block-sparse support skips them; a dense runtime such as onnxruntime on CPU does not).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smart_onnx._atomic import Record
from smart_onnx.data import Dataset
from smart_onnx.errors import DataError, GraphError
from smart_onnx.eval.ort import NO_LATENCY, EvalReport, LatencySettings, evaluate
from smart_onnx.eval.shapes import ort_shape_measure
from smart_onnx.graph import OutputInfo, analyze, infer_output_roles
from smart_onnx.graph import label_output as _label_output
from smart_onnx.model import OnnxModel, is_float_tensor, iter_graphs, tensor_to_array

__all__ = [
    "EVAL_BATCH_SIZE",
    "EVAL_LATENCY",
    "MACS_NOTE",
    "LayerRow",
    "ModelComparison",
    "Totals",
    "WeightComparison",
    "WeightCounts",
    "agreement_gate",
    "check_same_inputs",
    "compare_layers",
    "compare_models",
    "layer_totals",
    "weight_counts",
]

log = logging.getLogger(__name__)

# Samples per onnxruntime run when comparing models, and the larger latency batch beside 1.
EVAL_BATCH_SIZE = 32
# What compare_models measures unless told: latency at batch 1 and at the evaluation batch, onnxruntime's threads.
EVAL_LATENCY = LatencySettings(batches=(1, EVAL_BATCH_SIZE))

MACS_NOTE = ("MACs are effective MACs: dense MACs of each prunable layer times the density of its weight "
             "(zeroed blocks count as skipped; a dense CPU runtime still computes them)")


@dataclass
class LayerRow(Record):
    """One prunable layer before and after: weight shape, nonzero weights, sparsity, effective MACs.

    Attributes:
        sparsity: the fraction of the original weight's elements that are zero or removed.
        macs_after: the dense MACs times the weight's density (None where the MACs are unknown).
        sparsity_before: zeros the reference already had (``eval`` only; None in a prune report).
    """

    name: str
    op: str
    weight: str
    shape_before: list[int]
    shape_after: list[int]
    params_before: int
    params_after: int
    sparsity: float
    macs_before: int | None
    macs_after: int | None
    sparsity_before: float | None = None

    omit_if_none = ("sparsity_before",)



@dataclass
class Totals(Record):
    """Sums over the prunable layers: weights and MACs before and after, and after / before."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    params_ratio: float
    macs_ratio: float


@dataclass
class WeightCounts(Record):
    """Nonzero and total elements of a model's float initializers, subgraphs included."""

    nonzero: int
    total: int


@dataclass
class WeightComparison:
    """The float weights of both models (``weights`` in ``eval``'s JSON)."""

    reference: WeightCounts
    candidate: WeightCounts

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference.to_dict(), "candidate": self.candidate.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightComparison:
        return cls(WeightCounts.from_dict(data["reference"]), WeightCounts.from_dict(data["candidate"]))


@dataclass
class ModelComparison:
    """Everything ``smart-onnx eval`` reports; :meth:`to_dict` has the prune report's layer/totals/eval keys.

    Attributes:
        eval: the onnxruntime comparison (outputs, latency).
        layers: per prunable layer of the reference (keys as in the prune report, plus
            ``sparsity_before``: zeros already in the reference).
        weights: nonzero and total elements of all float initializers, of both models.
        totals: prunable-layer params and effective MACs before (reference) and after (candidate).
        latency: how latency was measured (written as ``latency_settings``).
    """

    eval: EvalReport
    layers: list[LayerRow]
    weights: WeightComparison
    totals: Totals
    latency: LatencySettings = NO_LATENCY

    def to_dict(self) -> dict[str, Any]:
        return {"eval": self.eval.to_dict(), "layers": [r.to_dict() for r in self.layers],
                "weights": self.weights.to_dict(),
                "totals": self.totals.to_dict(), "latency_settings": self.latency.to_dict(), "macs_note": MACS_NOTE}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelComparison:
        """The inverse of :meth:`to_dict` (``macs_note`` is the constant :data:`MACS_NOTE`)."""
        return cls(EvalReport.from_dict(data["eval"]), [LayerRow.from_dict(r) for r in data["layers"]],
                   WeightComparison.from_dict(data["weights"]), Totals.from_dict(data["totals"]),
                   LatencySettings.from_dict(data["latency_settings"]))


def check_same_inputs(reference: OnnxModel, candidate: OnnxModel) -> None:
    """The candidate must take the reference's inputs (same names).

    Raises:
        GraphError: the input names differ.
    """
    ref = [s.name for s in reference.inputs]
    cand = [s.name for s in candidate.inputs]
    if sorted(ref) != sorted(cand):
        raise GraphError(f"the candidate's inputs {cand} do not match the reference's {ref}; "
                         f"both models must take the same inputs")


def weight_counts(model: OnnxModel) -> WeightCounts:
    """Nonzero and total elements of the float initializers, subgraphs included."""
    nonzero = total = 0
    for graph in iter_graphs(model.graph):
        for t in graph.initializer:
            if is_float_tensor(t):
                a = tensor_to_array(t)
                nonzero += int(np.count_nonzero(a))
                total += int(a.size)
    return WeightCounts(nonzero, total)


def _layer_sizes(model: OnnxModel, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, Any]]:
    """Node name -> weight shape, nonzeros, elements, effective MACs (dense MACs times density)."""
    inits = {t.name: t for g in iter_graphs(model.graph) for t in g.initializer}
    out = {}
    for layer in analyze(model, shapes, measure_shapes=ort_shape_measure(model)).layers:
        w = tensor_to_array(inits[layer.weight])
        nonzero = int(np.count_nonzero(w))
        density = nonzero / w.size if w.size else 1.0
        macs = None if layer.macs is None else int(round(layer.macs * density))
        out[layer.name] = {"op": layer.op_type, "weight": layer.weight, "shape": list(w.shape),
                           "nonzero": nonzero, "size": int(w.size), "macs": macs}
    return out


def compare_layers(reference: OnnxModel, candidate: OnnxModel,
                   shapes: dict[str, tuple[int, ...]]) -> list[LayerRow]:
    """Per prunable layer of the reference: weights and effective MACs in both models.

    ``sparsity`` is the fraction of the reference layer's weights the candidate lacks
    (zeroed or removed). Layers the candidate no longer has are skipped with a log line.
    """
    ref, cand = _layer_sizes(reference, shapes), _layer_sizes(candidate, shapes)
    rows = []
    for name, r in ref.items():
        c = cand.get(name)
        if c is None:
            log.warning("layer %s of the reference is not a prunable layer of the candidate", name)
            continue
        rows.append(LayerRow(
            name=name, op=r["op"], weight=r["weight"], shape_before=r["shape"], shape_after=c["shape"],
            params_before=r["nonzero"], params_after=c["nonzero"],
            sparsity=1.0 - c["nonzero"] / r["size"] if r["size"] else 0.0,
            macs_before=r["macs"], macs_after=c["macs"],
            sparsity_before=1.0 - r["nonzero"] / r["size"] if r["size"] else 0.0,
        ))
    return rows


def layer_totals(layers: Sequence[LayerRow]) -> Totals:
    """Sums of the per-layer rows: params and MACs before/after and their ratios."""
    pb = sum(r.params_before for r in layers)
    pa = sum(r.params_after for r in layers)
    mb = sum(r.macs_before or 0 for r in layers)
    ma = sum(r.macs_after or 0 for r in layers)
    return Totals(pb, pa, mb, ma, params_ratio=pa / pb if pb else 1.0, macs_ratio=ma / mb if mb else 1.0)


def compare_models(
    reference: OnnxModel,
    candidate: OnnxModel,
    data: Dataset,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    latency: LatencySettings = EVAL_LATENCY,
    outputs: Sequence[OutputInfo] | None = None,
    label_output: str | None = None,
) -> ModelComparison:
    """Compare ``candidate`` with ``reference`` on ``data`` (loaded for the reference's inputs).

    Args:
        batch_size: evaluation batch size.
        latency: the batch sizes latency is measured at ((): none), the onnxruntime threads, the warm-up and
            timed runs.
        outputs: the roles of the outputs (None: inferred from the reference's graph).
        label_output: the class output the data's labels belong to (None: the single class output).

    Raises:
        GraphError: the models take different inputs.
        DataError: no samples, or onnxruntime rejects the data.
    """
    check_same_inputs(reference, candidate)
    if len(data) == 0:
        raise DataError(f"{data.source} has no samples to evaluate on")
    outputs = infer_output_roles(reference) if outputs is None else outputs
    label_output = label_output or _label_output(outputs, None, data.labels is not None)
    batches = ((b.inputs, b.labels) for b in data.batches(batch_size))  # read as evaluated, never all held
    report = evaluate(reference, candidate, batches, latency=latency, outputs=outputs, label_output=label_output)
    shapes = {name: (1, *a.shape[1:]) for name, a in data.arrays.items()}
    layers = compare_layers(reference, candidate, shapes)
    weights = WeightComparison(weight_counts(reference), weight_counts(candidate))
    return ModelComparison(report, layers, weights, layer_totals(layers), latency)


def agreement_gate(report: EvalReport, minimum: float) -> tuple[bool, float]:
    """Whether the lowest top-1 agreement over the class outputs reaches ``minimum``; returns (passed, agreement).

    Raises:
        DataError: no output has the class role, so there is no agreement to gate on.
    """
    agreement = report.top1_agreement
    if agreement is None:
        roles = {m.name: m.role for m in report.outputs}
        raise DataError(f"a minimum agreement needs a class output; the outputs' roles are {roles} "
                        f"(a role can be set per output)")
    return agreement >= minimum, agreement
