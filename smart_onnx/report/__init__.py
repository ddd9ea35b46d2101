"""The reports of ``prune``, ``eval`` and ``quantize`` as typed records, and their JSON forms.

``prune()`` returns a :class:`PruneReport` (written as ``MODEL.pruned.json``); ``smart-onnx eval``
builds an :class:`EvalResult` (``--json``), ``smart-onnx quantize`` a :class:`QuantizeCommandReport`.
The CLI's summaries, the HTML page and the scripts read their attributes. ``to_dict`` writes the
keys the JSON has always had, plus ``schema_version`` (:data:`SCHEMA_VERSION`); ``from_dict`` and
``from_json`` read them back, so ``from_json(to_json(r)) == r``.
"""

from smart_onnx.report._eval import AgreementGate, EvalResult
from smart_onnx.report._prune import FrozenGroup, PruneReport, SparsitySummary
from smart_onnx.report._quantize import (
    Calibration,
    QuantizeCommandReport,
    QuantizedLayer,
    QuantizeInfo,
    QuantizeReport,
    QuantizeSeconds,
    ZeroCounts,
)
from smart_onnx.report._schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "AgreementGate",
    "Calibration",
    "EvalResult",
    "FrozenGroup",
    "PruneReport",
    "QuantizeCommandReport",
    "QuantizeInfo",
    "QuantizeReport",
    "QuantizeSeconds",
    "QuantizedLayer",
    "SparsitySummary",
    "ZeroCounts",
]
