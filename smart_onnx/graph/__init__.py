"""Graph analysis: prunable layers, MACs and channel-coupling groups (imports onnx and numpy, never torch)."""

from __future__ import annotations

from smart_onnx.graph.analysis import Analysis, ShapeMeasure, analyze
from smart_onnx.graph.groups import CouplingGroup, Role, ShapeEdit, TensorSlice, check_keep
from smart_onnx.graph.index_map import (
    ChainMap,
    IdentityMap,
    IndexMap,
    OffsetMap,
    RepeatMap,
    TableMap,
    WindowMap,
    fit_map,
)
from smart_onnx.graph.layers import PrunableLayer, find_prunable_layers
from smart_onnx.graph.outputs import OutputInfo, OutputRole, infer_output_roles, label_output, parse_role_overrides
from smart_onnx.graph.view import GraphView, measured_shapes, output_ranks, value_shapes

__all__ = [
    "Analysis",
    "ChainMap",
    "CouplingGroup",
    "GraphView",
    "IdentityMap",
    "IndexMap",
    "OffsetMap",
    "OutputInfo",
    "OutputRole",
    "PrunableLayer",
    "RepeatMap",
    "Role",
    "ShapeEdit",
    "ShapeMeasure",
    "TableMap",
    "TensorSlice",
    "WindowMap",
    "analyze",
    "check_keep",
    "find_prunable_layers",
    "fit_map",
    "infer_output_roles",
    "label_output",
    "measured_shapes",
    "output_ranks",
    "parse_role_overrides",
    "value_shapes",
]
