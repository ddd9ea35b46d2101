"""What quantization did and how the INT8 model compares: ``quantize``'s report and ``prune --quantize``'s part.

Records only: :mod:`smart_onnx.quant` fills them, the CLI and the scripts read them. The JSON
keys are the ones these reports always had (``zeros`` counts are ``float`` and ``int8``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from smart_onnx._atomic import Record, StageSeconds, from_fields
from smart_onnx.eval.fidelity import FidelityVerdict
from smart_onnx.eval.ort import EvalReport
from smart_onnx.hw import CheckReport
from smart_onnx.report._schema import SCHEMA_VERSION, JsonReport

__all__ = [
    "Calibration", "QuantizeCommandReport", "QuantizeInfo", "QuantizeReport", "QuantizeSeconds", "QuantizedLayer",
    "ZeroCounts",
]


@dataclass
class QuantizeReport:
    """INT8 vs float (and vs dense): per-output metrics and verdicts, latency, file sizes.

    Attributes:
        versus: ``"float"`` (and ``"dense"``) -> onnxruntime, that model against the INT8 one.
        fidelity: the same keys -> the verdict over the outputs.
        bytes: ``"int8"``, ``"float"`` (and ``"dense"``) -> serialised size (of the graph's weights and nodes:
            the file's to within its header's bytes).
    """

    samples: int
    versus: dict[str, EvalReport] = field(default_factory=dict)
    fidelity: dict[str, FidelityVerdict] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every gate held (no gate: always)."""
        return all(v.passed for v in self.fidelity.values())

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "versus": {k: v.to_dict() for k, v in self.versus.items()},
                "fidelity": {k: v.to_dict() for k, v in self.fidelity.items()}, "bytes": self.bytes,
                "passed": self.passed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizeReport:
        return cls(data["samples"], {k: EvalReport.from_dict(v) for k, v in data["versus"].items()},
                   {k: from_fields(FidelityVerdict, v) for k, v in data["fidelity"].items()}, data["bytes"])


@dataclass
class QuantizedLayer(Record):
    """One prunable layer's weight: its zeros in float and in INT8, and the small weights kept off zero.

    Attributes:
        zeros_int8: None where onnxruntime left the weight in float.
        restored: weights that would have rounded to 0 and were set to +-1 step.
        integer_weight: the INT8 initializer (None where the weight stayed float).
    """

    name: str
    weight: str
    size: int
    zeros_float: int
    zeros_int8: int | None = None
    restored: int = 0
    zeros_kept: bool = True
    integer_weight: str | None = None

    omit_if_none = ("integer_weight",)


@dataclass
class ZeroCounts:
    """Zeros of the prunable weights, summed over the layers (JSON keys ``float`` and ``int8``)."""

    in_float: int
    in_int8: int
    kept: bool
    restored: int
    quantized_layers: int
    layers: int

    def to_dict(self) -> dict[str, Any]:
        return {"float": self.in_float, "int8": self.in_int8, "kept": self.kept, "restored": self.restored,
                "quantized_layers": self.quantized_layers, "layers": self.layers}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZeroCounts:
        return from_fields(cls, data, in_float=data["float"], in_int8=data["int8"])


@dataclass
class Calibration:
    """How activation ranges were calibrated."""

    method: str
    samples: int
    batch_size: int


@dataclass
class QuantizeSeconds(StageSeconds):
    """Wall time of each stage of quantization."""

    calibrate_and_quantize: float | None = None
    verify: float | None = None


@dataclass
class QuantizeInfo:
    """What quantization did (settings, per-layer zeros, time) and, once judged, the comparison and the check.

    Attributes:
        format, weights, activations: the QDQ settings in words.
        onnxruntime: the version that quantized.
        seconds: wall time per quantization stage.
        eval: the INT8 model against the float (and dense) model, with held-out data.
        check: the INT8 model against the target, with one.
    """

    format: str
    weights: str
    activations: str
    calibration: Calibration
    onnxruntime: str
    layers: list[QuantizedLayer]
    zeros: ZeroCounts
    seconds: QuantizeSeconds = field(default_factory=QuantizeSeconds)
    eval: QuantizeReport | None = None
    check: CheckReport | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"format": self.format, "weights": self.weights, "activations": self.activations,
               "calibration": asdict(self.calibration), "onnxruntime": self.onnxruntime,
               "layers": [lay.to_dict() for lay in self.layers], "zeros": self.zeros.to_dict(),
               "seconds": self.seconds.to_dict()}
        if self.eval is not None:
            out["eval"] = self.eval.to_dict()
        if self.check is not None:
            out["check"] = self.check.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizeInfo:
        return from_fields(
            cls, data, calibration=from_fields(Calibration, data["calibration"]),
            layers=[from_fields(QuantizedLayer, lay) for lay in data["layers"]],
            zeros=ZeroCounts.from_dict(data["zeros"]), seconds=QuantizeSeconds.from_dict(data.get("seconds", {})),
            eval=None if data.get("eval") is None else QuantizeReport.from_dict(data["eval"]),
            check=None if data.get("check") is None else CheckReport.from_dict(data["check"]),
        )


@dataclass
class QuantizeCommandReport(JsonReport):
    """What ``smart-onnx quantize`` writes beside the INT8 model."""

    command: str | None
    input: str
    output: str
    quantize: QuantizeInfo
    provenance: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "command": self.command, "input": self.input,
                "output": self.output, "quantize": self.quantize.to_dict(), "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizeCommandReport:
        return from_fields(cls, data, schema_version=data.get("schema_version", 1),
                           quantize=QuantizeInfo.from_dict(data["quantize"]))
