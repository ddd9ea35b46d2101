"""Hardware profiles: what a target NPU accelerates, the compliance checker, and search constraints."""

from __future__ import annotations

from smart_onnx.hw.checker import (
    ORIGINAL_KEY,
    RULES,
    CheckReport,
    LayerCheck,
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
from smart_onnx.hw.search_constraints import align_channel_keep, min_kept_channels, unit_constraints

__all__ = [
    "DEFAULT_PROFILE",
    "ORIGINAL_KEY",
    "RULES",
    "CheckReport",
    "LayerCheck",
    "OpRule",
    "Profile",
    "Violation",
    "align_channel_keep",
    "block_shape_for",
    "block_shapes",
    "builtin_names",
    "check_model",
    "dense_layer_names",
    "dense_reasons",
    "format_block",
    "list_profiles",
    "load_profile",
    "min_kept_channels",
    "mode_for",
    "nm_for",
    "nm_layers",
    "parse_profile",
    "profile_from_dict",
    "original_layers",
    "record_original",
    "unit_constraints",
]
