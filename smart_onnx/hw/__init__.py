"""Hardware profiles: what a target NPU accelerates, and the compliance checker.

Imports onnx and numpy only: never torch, the search or the rewriter (``smart-onnx check``
and ``targets`` start without them). How a profile constrains the search lives in
:mod:`smart_onnx.modes`.
"""

from __future__ import annotations

from smart_onnx.hw.checker import (
    ORIGINAL_KEY,
    RULES,
    CheckReport,
    LayerCheck,
    NotJudged,
    Violation,
    check_model,
    original_layers,
    record_original,
)
from smart_onnx.hw.constraints import OpRule, Profile, format_block
from smart_onnx.hw.profile import (
    DEFAULT_PROFILE,
    builtin_names,
    list_profiles,
    load_profile,
    parse_profile,
    profile_from_dict,
)
from smart_onnx.hw.rules import (
    block_shape_for,
    block_shapes,
    dense_layer_names,
    dense_reasons,
    mode_for,
    nm_for,
    nm_layers,
)

__all__ = [
    "DEFAULT_PROFILE",
    "ORIGINAL_KEY",
    "RULES",
    "CheckReport",
    "LayerCheck",
    "NotJudged",
    "OpRule",
    "Profile",
    "Violation",
    "block_shape_for",
    "block_shapes",
    "builtin_names",
    "check_model",
    "dense_layer_names",
    "dense_reasons",
    "format_block",
    "list_profiles",
    "load_profile",
    "mode_for",
    "nm_for",
    "nm_layers",
    "parse_profile",
    "profile_from_dict",
    "original_layers",
    "record_original",
]
