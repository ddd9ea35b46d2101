"""What ``smart-onnx inspect`` reports: the model, what the executor can run, what can be pruned."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smart_onnx.errors import GraphError
from smart_onnx.graph import Analysis, analyze, find_prunable_layers, infer_output_roles
from smart_onnx.hw.qdq import dequantized_view
from smart_onnx.model import OnnxModel, iter_graphs, resolve_input_shapes
from smart_onnx.op_support import unsupported_nodes
from smart_onnx.provenance import read_provenance

__all__ = ["ModelSummary", "summarize"]


@dataclass
class ModelSummary:
    path: str | None
    ir_version: int
    opsets: dict[str, int]
    producer: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    op_histogram: dict[str, int]
    total_weights: int
    unsupported: list[str]
    input_shapes: dict[str, tuple[int, ...]] | None
    analysis: Analysis | None
    notes: list[str] = field(default_factory=list)
    # False: symbolic input dims and no shapes given; layers come from the weights, no MACs or channel groups.
    shapes_known: bool = True
    provenance: dict[str, str] = field(default_factory=dict)  # smart-onnx's metadata entries, if it wrote the model

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "producer": self.producer,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "op_histogram": self.op_histogram,
            "total_weights": self.total_weights,
            "unsupported": self.unsupported,
            "input_shapes": {k: list(v) for k, v in (self.input_shapes or {}).items()},
            "analysis": self.analysis.to_dict() if self.analysis else None,
            "shapes_known": self.shapes_known,
            "provenance": self.provenance,
            "notes": self.notes,
        }


def summarize(model: OnnxModel, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> ModelSummary:
    """Describe ``model``; MACs are per sample at ``input_shapes`` (symbolic batch -> 1).

    A model with symbolic non-batch dims and no ``input_shapes`` is summarised with its
    prunable layers read from the weights, but without MACs and channel groups (those need
    activation shapes; noted), rather than failing.
    """
    notes: list[str] = []
    histogram = collections.Counter(n.op_type for g in iter_graphs(model.graph) for n in g.node)
    if model.lifted_constants:
        histogram["Constant (lifted to initializers)"] = len(model.lifted_constants)
    try:
        shapes: dict[str, tuple[int, ...]] | None = resolve_input_shapes(model, input_shapes)
    except GraphError as e:
        if input_shapes:
            raise
        notes.append(f"MACs and channel groups not analysed (they need activation shapes): {e}")
        shapes = None
    proto = model.proto
    view, quantized = dequantized_view(model)  # a QDQ model's layers are read through its DequantizeLinear nodes
    if quantized:
        notes.append(f"QDQ model: {len(quantized)} quantized tensors; prunable layers are read through their "
                     "DequantizeLinear nodes")
    return ModelSummary(
        path=str(model.path) if model.path else None,
        ir_version=int(proto.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        producer=" ".join(x for x in (proto.producer_name, proto.producer_version) if x),
        inputs=[{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in model.inputs],
        outputs=[{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype), "role": role.role.value,
                  "why": role.reason} for s, role in zip(model.outputs, infer_output_roles(model))],
        op_histogram=dict(histogram.most_common()),
        total_weights=model.num_weights(),
        unsupported=unsupported_nodes(model),
        input_shapes=shapes,
        analysis=analyze(view, shapes) if shapes is not None else Analysis(tuple(find_prunable_layers(view)), ()),
        notes=notes,
        shapes_known=shapes is not None,
        provenance=read_provenance(proto),
    )
