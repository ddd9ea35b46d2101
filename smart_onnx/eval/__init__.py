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
from smart_onnx.eval.ort import EvalReport, LatencyResult, OutputMetrics, compare_outputs, evaluate

__all__ = [
    "MACS_NOTE",
    "EvalReport",
    "LatencyResult",
    "ModelComparison",
    "OutputMetrics",
    "agreement_gate",
    "check_same_inputs",
    "compare_layers",
    "compare_models",
    "compare_outputs",
    "evaluate",
    "layer_totals",
    "weight_counts",
]
