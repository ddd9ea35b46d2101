"""Prune, then quantize: static INT8 post-training quantization that keeps every pruned zero.

``onnxruntime.quantization`` (part of onnxruntime, no new dependency) writes a QDQ model:
weights as INT8 initializers behind ``DequantizeLinear`` (symmetric, one scale per output
channel, zero point 0), activations quantized per tensor with ranges calibrated on the
calibration data. Symmetric weights map 0.0 to the integer 0, so every zeroed block and
N:M group stays exactly zero. One thing would still break the pattern: a *kept* weight
smaller than half its channel's step rounds to 0 too, a stray zero no hardware pattern
allows. :func:`quantize_model` moves each such weight to the nearest non-zero integer
(+-1, an error of at most one step instead of half a step), so the integer weights are zero
exactly where the float weights are, then verifies it layer by layer.

Only this package and :mod:`smart_onnx.eval` import onnxruntime.
"""

from smart_onnx.quant.quantize import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    QuantizeOptions,
    QuantizeOutcome,
    quantize_model,
)
from smart_onnx.quant.report import QuantizeReport, evaluate_quantized

__all__ = [
    "ACTIVATION_TYPES",
    "CALIBRATION_METHODS",
    "QuantizeOptions",
    "QuantizeOutcome",
    "QuantizeReport",
    "evaluate_quantized",
    "quantize_model",
]
