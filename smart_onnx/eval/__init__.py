"""Evaluation: a candidate model against its reference in onnxruntime, and the HTML report."""

from __future__ import annotations

from smart_onnx.eval.compare import (
    MACS_NOTE,
    ModelComparison,
    agreement_gate,
    check_same_inputs,
    compare_layers,
    compare_models,
    layer_totals,
    weight_counts,
)
from smart_onnx.eval.fidelity import (
    COSINE_WARNING,
    FidelityVerdict,
    OutputComparison,
    OutputMetrics,
    compare_outputs,
    judge_fidelity,
)
from smart_onnx.eval.ort import EvalReport, LatencyResult, evaluate

__all__ = [
    "COSINE_WARNING",
    "FidelityVerdict",
    "MACS_NOTE",
    "EvalReport",
    "LatencyResult",
    "ModelComparison",
    "OutputComparison",
    "OutputMetrics",
    "agreement_gate",
    "check_same_inputs",
    "compare_layers",
    "compare_models",
    "compare_outputs",
    "evaluate",
    "judge_fidelity",
    "layer_totals",
    "weight_counts",
]
