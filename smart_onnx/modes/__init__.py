"""Pruning modes: one object per mode, built once from the request and the model, behind one protocol.

Above :mod:`smart_onnx.search` and :mod:`smart_onnx.rewrite` (a mode chooses its space and
ranking, and its rewrite) and :mod:`smart_onnx.hw` (the target's rules become its
constraints); below :mod:`smart_onnx.prune`, which calls only :class:`PruningMode`. A new
mode is one module here that calls :func:`register_mode`, plus its import below
(docs/design.md, "Adding a pruning mode").
"""

from __future__ import annotations

from smart_onnx.graph import Analysis
from smart_onnx.hw import mode_for
from smart_onnx.model import OnnxModel
from smart_onnx.modes import block, channel, nm  # noqa: F401  (each registers its mode)
from smart_onnx.modes.base import (
    GloballyRankedMode,
    ModeBuilder,
    ModeFactory,
    ModeRequest,
    PruningMode,
    mode_builder,
    register_mode,
    registered_modes,
)
from smart_onnx.modes.block import DEFAULT_BLOCK
from smart_onnx.modes.nm import DEFAULT_NM

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_NM",
    "MODES",
    "GloballyRankedMode",
    "ModeBuilder",
    "ModeFactory",
    "ModeRequest",
    "PruningMode",
    "build_mode",
    "check_request",
    "mode_builder",
    "register_mode",
    "registered_modes",
]

MODES = registered_modes()


def check_request(request: ModeRequest) -> str:
    """The mode to run, refusing what can be refused before the model is analysed.

    Returns:
        The mode's name: the request's, else the target's, else ``"block"``.

    Raises:
        ConstraintError: an unknown mode, one the target cannot serve, or a missing sparsity.
    """
    if request.mode is not None:
        mode_builder(request.mode)  # an unknown name is refused before the target is asked
    name = mode_for(request.target, request.mode) if request.target else (request.mode or "block")
    mode_builder(name).check(request)
    return name


def build_mode(request: ModeRequest, analysis: Analysis, model: OnnxModel) -> PruningMode:
    """The mode for one analysed model: its space, ranking and constraints, resolved against the target once.

    Raises:
        ConstraintError: see :func:`check_request`; also a block or N:M pattern the target does not allow,
            or a sparsity that contradicts the N:M pattern.
    """
    return mode_builder(check_request(request)).build(request, analysis, model)
