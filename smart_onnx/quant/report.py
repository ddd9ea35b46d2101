"""The quantized model against its float models in onnxruntime: fidelity by output role, size, latency.

The comparison itself is :func:`smart_onnx.eval.evaluate` and :func:`smart_onnx.eval.judge_fidelity`
(every output judged by its role), once against the float model that was quantized and
once against the dense original when it is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from smart_onnx.data import Dataset
from smart_onnx.errors import DataError
from smart_onnx.eval import EVAL_BATCH_SIZE, EVAL_LATENCY, LatencySettings, evaluate, judge_fidelity
from smart_onnx.graph import OutputInfo, infer_output_roles
from smart_onnx.graph import label_output as pick_label_output
from smart_onnx.model import OnnxModel, proto_bytes
from smart_onnx.report import QuantizeReport

__all__ = ["QuantizeReport", "evaluate_quantized"]


def evaluate_quantized(
    quantized: OnnxModel,
    float_model: OnnxModel,
    data: Dataset,
    *,
    dense: OnnxModel | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    latency: LatencySettings = EVAL_LATENCY,
    outputs: Sequence[OutputInfo] | None = None,
    label_output: str | None = None,
    min_fidelity: float | None = None,
) -> QuantizeReport:
    """Compare the INT8 model with the float model it came from, and with the dense original if given.

    Args:
        quantized: the INT8 QDQ model.
        float_model: the float model that was quantized (pruned, or the dense model itself).
        data: held-out evaluation data (labels score accuracy on the labelled class output).
        dense: the dense original, when ``float_model`` is a pruned version of it.
        batch_size: evaluation batch size.
        latency: the batch sizes at which the INT8 model's median latency is measured against the float
            models' ((): none; a batch larger than ``data`` is cut to it), and the onnxruntime threads.
        outputs: output roles (None: inferred from the float model's graph).
        label_output: the class output the labels belong to (None: the single class output).
        min_fidelity: the gate each comparison must hold.

    Raises:
        DataError: no evaluation samples, or onnxruntime rejects the data.
    """
    if len(data) == 0:
        raise DataError(f"{data.source} has no samples to evaluate on")
    outputs = list(outputs) if outputs is not None else infer_output_roles(float_model)
    label_output = label_output or pick_label_output(outputs, None, data.labels is not None)
    latency = replace(latency, batches=tuple(min(b, len(data)) if b > 1 else b for b in latency.batches))
    report = QuantizeReport(samples=len(data))
    references = {"float": float_model, **({"dense": dense} if dense is not None else {})}
    for key, reference in references.items():
        batches = ((b.inputs, b.labels) for b in data.batches(batch_size))  # read as evaluated, once per reference
        result = evaluate(reference, quantized, batches, latency=latency, outputs=outputs, label_output=label_output)
        report.versus[key] = result
        report.fidelity[key] = judge_fidelity(result.outputs, min_fidelity)
    # proto_bytes, not ByteSize(): the latter serialises each whole model to measure it (twice its size in memory)
    report.bytes = {"int8": proto_bytes(quantized.proto), "float": proto_bytes(float_model.proto)}
    if dense is not None:
        report.bytes["dense"] = proto_bytes(dense.proto)
    return report
