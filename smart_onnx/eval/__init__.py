"""Evaluation: a candidate model against its reference in onnxruntime, and the HTML report."""

from __future__ import annotations

from smart_onnx.eval.compare import (
    EVAL_BATCH_SIZE,
    EVAL_LATENCY,
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
from smart_onnx.eval.ort import (
    LATENCY_REPEATS,
    LATENCY_WARMUP,
    NO_LATENCY,
    EvalReport,
    LatencyResult,
    LatencySettings,
    evaluate,
)

__all__ = [
    "COSINE_WARNING",
    "EVAL_BATCH_SIZE",
    "EVAL_LATENCY",
    "LATENCY_REPEATS",
    "LATENCY_WARMUP",
    "NO_LATENCY",
    "FidelityVerdict",
    "MACS_NOTE",
    "EvalReport",
    "LatencyResult",
    "LatencySettings",
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
