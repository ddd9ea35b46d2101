"""``eval``'s result: :class:`EvalResult`, what ``smart-onnx eval --json`` prints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from smart_onnx._atomic import from_fields
from smart_onnx.eval.compare import LayerRow, ModelComparison, Totals
from smart_onnx.eval.fidelity import FidelityVerdict
from smart_onnx.eval.ort import EvalReport
from smart_onnx.graph import OutputInfo
from smart_onnx.report._schema import SCHEMA_VERSION, JsonReport

__all__ = ["AgreementGate", "EvalResult"]


@dataclass
class AgreementGate:
    """``eval --min-agreement``: the lowest top-1 agreement over the class outputs against the minimum."""

    min_agreement: float
    agreement: float
    passed: bool


@dataclass
class EvalResult(JsonReport):
    """What ``smart-onnx eval`` reports: the comparison of two models, the outputs' roles, the verdict.

    Attributes:
        reference, candidate, data: the paths given.
        command: the command line.
        comparison: onnxruntime metrics, weights, per-layer sizes and latency settings (its ``eval``,
            ``layers`` and ``totals`` are also this report's, as a :class:`PruneReport` has them).
        outputs: every output's role and why.
        fidelity: the verdict over the outputs (and the ``--min-fidelity`` gate).
        gate: the ``--min-agreement`` gate, when one was given.
    """

    reference: str
    candidate: str
    data: str
    command: str | None
    comparison: ModelComparison
    outputs: list[OutputInfo]
    fidelity: FidelityVerdict
    gate: AgreementGate | None = None
    schema_version: int = SCHEMA_VERSION

    # What a PruneReport holds under the same names, so that the HTML page reads either alike.
    @property
    def eval(self) -> EvalReport:
        return self.comparison.eval

    @property
    def layers(self) -> list[LayerRow]:
        return self.comparison.layers

    @property
    def totals(self) -> Totals:
        return self.comparison.totals

    def to_dict(self) -> dict[str, Any]:
        out = {"schema_version": self.schema_version, "reference": self.reference, "candidate": self.candidate,
               "data": self.data, "command": self.command, **self.comparison.to_dict(),
               "outputs": [o.to_dict() for o in self.outputs], "fidelity": self.fidelity.to_dict()}
        if self.gate is not None:
            out["gate"] = asdict(self.gate)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return from_fields(
            cls, data, schema_version=data.get("schema_version", 1), comparison=ModelComparison.from_dict(data),
            outputs=[OutputInfo.from_dict(o) for o in data["outputs"]],
            fidelity=from_fields(FidelityVerdict, data["fidelity"]),
            gate=None if data.get("gate") is None else from_fields(AgreementGate, data["gate"]),
        )
