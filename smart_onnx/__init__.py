"""smart-onnx: SMART pruning of already-exported ONNX models for edge NPUs."""

from __future__ import annotations

from smart_onnx.errors import (
    ConstraintError,
    DataError,
    GraphError,
    InternalError,
    ModelLoadError,
    ProfileError,
    RewriteError,
    SmartOnnxError,
    UnsupportedOpError,
)
from smart_onnx.model import InputSpec, OnnxModel, load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "ConstraintError",
    "DataError",
    "GraphError",
    "InputSpec",
    "InternalError",
    "ModelLoadError",
    "OnnxModel",
    "ProfileError",
    "RewriteError",
    "SmartOnnxError",
    "UnsupportedOpError",
    "__version__",
    "load_model",
    "save_model",
]
