"""smart-onnx: SMART pruning of already-exported ONNX models for edge NPUs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from smart_onnx.model import InputSpec, OnnxModel, load_model, save_model

__version__ = "0.1.0"

# Imported on first use, so that ``smart-onnx --version`` does not load onnx.
_LAZY = {"InputSpec", "OnnxModel", "load_model", "save_model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from smart_onnx import model

        return getattr(model, name)
    raise AttributeError(f"module 'smart_onnx' has no attribute {name!r}")

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
