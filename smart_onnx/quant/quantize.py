"""Static INT8 quantization (QDQ) with onnxruntime, keeping the float model's zeros exactly."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from smart_onnx.data import Dataset
from smart_onnx.errors import ConstraintError, DataError, RewriteError
from smart_onnx.graph import find_prunable_layers
from smart_onnx.hw import ORIGINAL_KEY, record_original
from smart_onnx.hw.qdq import is_quantized
from smart_onnx.model import OnnxModel, normalize, save_model, tensor_to_array
from smart_onnx.provenance import read_provenance, source_sha256, stamp_provenance
from smart_onnx.report import Calibration, QuantizedLayer, QuantizeInfo, QuantizeSeconds, ZeroCounts
from smart_onnx.rewrite.passes import validate

__all__ = ["ACTIVATION_TYPES", "CALIBRATION_METHODS", "QuantizeOptions", "QuantizeOutcome", "quantize_model"]

log = logging.getLogger(__name__)

# uint8: asymmetric per tensor (onnxruntime's CPU default, what most NPU toolchains take);
# int8: symmetric per tensor with zero point 0 (what TensorRT requires of QDQ models).
ACTIVATION_TYPES = ("uint8", "int8")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}
_INT8 = (-128, 127)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize.

    Attributes:
        activations: ``uint8`` (asymmetric) or ``int8`` (symmetric, zero point 0).
        calibration: how activation ranges are taken from the calibration data:
            ``minmax``, ``percentile`` or ``entropy`` (onnxruntime's calibrators).
        samples: calibration samples to use (None: all of them).
        batch_size: samples per calibration run.
        target: the hardware profile the model is for (recorded in the provenance).
    """

    activations: str = "uint8"
    calibration: str = "minmax"
    samples: int | None = None
    batch_size: int = 16
    target: str | None = None

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATION_TYPES:
            raise ConstraintError(f"activation type must be one of {list(ACTIVATION_TYPES)}, got {self.activations!r}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ConstraintError(f"calibration method must be one of {list(CALIBRATION_METHODS)}, "
                                  f"got {self.calibration!r}")
        if self.samples is not None and self.samples < 1:
            raise ConstraintError(f"calibration needs at least one sample, got {self.samples}")
        if self.batch_size < 1:
            raise ConstraintError(f"calibration batch size must be at least 1, got {self.batch_size}")

    def describe(self) -> dict[str, str]:
        act = ("int8, symmetric per tensor (zero point 0)" if self.activations == "int8"
               else "uint8, asymmetric per tensor")
        return {"format": "QDQ", "weights": "int8, symmetric per output channel (zero point 0)", "activations": act}


@dataclass
class QuantizeOutcome:
    """The INT8 model and what was done."""

    model: OnnxModel
    info: QuantizeInfo


class _Reader(CalibrationDataReader):
    """Calibration batches for onnxruntime, float inputs as float32."""

    def __init__(self, data: Dataset, batch_size: int) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {k: np.ascontiguousarray(v) for k, v in b.inputs.items()} for b in data.batches(batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


class _Quiet(logging.Filter):
    """onnxruntime's quantizer advises pre-processing on the root logger for every model: not our user's concern."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    root = logging.getLogger()
    quiet = _Quiet()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def quantize_model(
    model: OnnxModel,
    calibration: Dataset,
    options: QuantizeOptions | None = None,
    *,
    original: OnnxModel | None = None,
) -> QuantizeOutcome:
    """Quantize a float model to INT8 QDQ, calibrated on ``calibration``; its zeros stay exactly zero.

    Args:
        model: the float model (pruned or not); it is not modified.
        calibration: data for the activation ranges.
        options: activation type, calibration method and size.
        original: the model before pruning, recorded (as ``prune`` does) so that ``check``
            accepts the zeros and channel counts it already had; not needed when ``model``
            already carries that record (smart-onnx's prune output does).

    Returns:
        The QDQ model (it passes the full ONNX checker) and ``info``: settings, per-layer
        zeros of the float and the integer weights, timings.

    Raises:
        ConstraintError: the model is already quantized, or bad options.
        DataError: no calibration samples, or onnxruntime cannot run them.
        RewriteError: the quantized model lost a zero or fails the checker (a bug).
    """
    options = options or QuantizeOptions()
    if is_quantized(model):
        raise ConstraintError("the model is already quantized (it has DequantizeLinear nodes); quantize its float "
                              "version instead")
    data = calibration.take(min(options.samples, len(calibration))) if options.samples else calibration
    if len(data) == 0:
        raise DataError("quantization needs calibration samples; the calibration data has none")
    start = time.perf_counter()
    proto = _run_onnxruntime(model, data, options)
    seconds = QuantizeSeconds(calibrate_and_quantize=time.perf_counter() - start)
    start = time.perf_counter()
    layers = _keep_zeros(model, proto)
    if ORIGINAL_KEY not in {e.key for e in proto.metadata_props} and original is not None:
        record_original(proto, original)
    previous = read_provenance(model.proto)
    prunable = find_prunable_layers(model)
    total = sum(int(np.prod(lay.weight_shape)) for lay in prunable)
    zeros = sum(int(np.count_nonzero(tensor_to_array(model.initializers[lay.weight]) == 0)) for lay in prunable)
    stamp_provenance(proto, {
        "mode": previous.get("smart_onnx.mode", "none"),
        "sparsity_requested": previous.get("smart_onnx.sparsity_requested", "none"),
        "sparsity_achieved": previous.get("smart_onnx.sparsity_achieved", f"{zeros / total:.6f}" if total else "0"),
        "sparsity_budget": previous.get("smart_onnx.sparsity_budget", "params"),
        "target": options.target or previous.get("smart_onnx.target", "none"),
        "source_sha256": source_sha256(model),
        "quantized": "int8",
    })
    quantized = normalize(proto, model.path)
    validate(quantized, subject="the quantized model")
    seconds.verify = time.perf_counter() - start
    zeros = ZeroCounts(
        in_float=sum(r.zeros_float for r in layers),
        in_int8=sum(r.zeros_int8 for r in layers if r.zeros_int8 is not None),
        kept=all(r.zeros_kept for r in layers),
        restored=sum(r.restored for r in layers),
        quantized_layers=sum(r.zeros_int8 is not None for r in layers),
        layers=len(layers),
    )
    calibration = Calibration(options.calibration, len(data), options.batch_size)
    info = QuantizeInfo(**options.describe(), calibration=calibration, onnxruntime=onnxruntime.__version__,
                        layers=layers, zeros=zeros, seconds=seconds)
    log.info("quantized %d of %d prunable layers to INT8; %d small weights kept off zero",
             zeros.quantized_layers, len(layers), zeros.restored)
    return QuantizeOutcome(quantized, info)


def _run_onnxruntime(model: OnnxModel, data: Dataset, options: QuantizeOptions) -> onnx.ModelProto:
    """onnxruntime's static quantizer on a file copy (it edits a proto it is given in place)."""
    with tempfile.TemporaryDirectory(prefix="smart_onnx_quant_") as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        save_model(model, src)
        act = QuantType.QInt8 if options.activations == "int8" else QuantType.QUInt8
        try:
            with _quiet_root():
                quantize_static(
                    src, dst, _Reader(data, options.batch_size), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=act, calibrate_method=_METHODS[options.calibration],
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": options.activations == "int8"},
                )
        except (ValueError, RuntimeError, onnxruntime.capi.onnxruntime_pybind11_state.Fail,
                onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DataError(f"onnxruntime could not calibrate or quantize the model: {first[:300]}") from e
        return onnx.load(dst)


def _integer_weight(proto: onnx.ModelProto, node_name: str) -> tuple[onnx.NodeProto, onnx.TensorProto] | None:
    """The DequantizeLinear node and integer initializer behind a layer's weight (through Identity/Transpose)."""
    nodes = {n.name: n for n in proto.graph.node}
    producers = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name: t for t in proto.graph.initializer}
    node = nodes.get(node_name)
    if node is None or len(node.input) < 2:
        return None
    value = node.input[1]
    while (before := producers.get(value)) is not None and before.op_type in ("Identity", "Transpose"):
        if before.op_type == "Transpose":
            return None  # quantized after a transpose: the integer tensor is not the float initializer's layout
        value = before.input[0]
    if before is None or before.op_type != "DequantizeLinear" or before.input[0] not in inits:
        return None
    return before, inits[before.input[0]]


def _keep_zeros(model: OnnxModel, proto: onnx.ModelProto) -> list[QuantizedLayer]:
    """Make every quantized weight zero exactly where its float weight is zero; per-layer counts.

    onnxruntime rounds a kept weight smaller than half a step to 0, which would add zeros
    outside the pruning pattern: such weights become +-1 (zero point + sign).

    Raises:
        RewriteError: a zero point is not 0 or a float zero is not an integer zero (a bug).
    """
    rows = []
    inits = {t.name: t for t in proto.graph.initializer}
    for layer in find_prunable_layers(model):
        w = tensor_to_array(model.initializers[layer.weight])
        row = QuantizedLayer(layer.name, layer.weight, int(w.size), zeros_float=int(np.count_nonzero(w == 0)))
        found = _integer_weight(proto, layer.name)
        if found is None:
            log.info("layer %s keeps a float weight (not quantized by onnxruntime)", layer.name)
            rows.append(row)
            continue
        dq, tensor = found
        q = tensor_to_array(tensor).astype(np.int64)
        if q.shape != w.shape:
            raise RewriteError(f"the quantized weight of layer {layer.name!r} has shape {list(q.shape)}, not the "
                               f"float weight's {list(w.shape)}")
        zp_name = dq.input[2] if len(dq.input) > 2 else ""
        zp = tensor_to_array(inits[zp_name]) if zp_name else np.zeros(1)
        if np.any(zp != 0):
            raise RewriteError(f"layer {layer.name!r}: the weight zero point is not 0 (asymmetric weights would not "
                               "keep zeros at zero)")
        lost = (w != 0) & (q == 0)
        if lost.any():
            q = np.where(lost, np.sign(w).astype(np.int64), q)
        if not np.array_equal(q == 0, w == 0) or q.min() < _INT8[0] or q.max() > _INT8[1]:
            raise RewriteError(f"layer {layer.name!r}: the INT8 weight's zeros differ from the float weight's")
        if lost.any():
            fixed = numpy_helper.from_array(q.astype(tensor_to_array(tensor).dtype), tensor.name)
            tensor.CopyFrom(fixed)
        row.zeros_int8, row.restored = int(np.count_nonzero(q == 0)), int(np.count_nonzero(lost))
        row.integer_weight = tensor.name
        rows.append(row)
    return rows
