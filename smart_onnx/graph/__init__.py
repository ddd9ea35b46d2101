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
from smart_onnx.graph.view import GraphView, measured_shapes, value_shapes

__all__ = [
    "Analysis",
    "ChainMap",
    "CouplingGroup",
    "GraphView",
    "IdentityMap",
    "IndexMap",
    "OffsetMap",
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
    "measured_shapes",
    "value_shapes",
]
