"""N:M mode: N of every M consecutive weights along each layer's input axis kept.

The pattern (the request's, else the first the target allows for any layer) fixes the
sparsity, so the request's sparsity may only repeat it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis
from smart_onnx.hw import nm_layers
from smart_onnx.model import OnnxModel
from smart_onnx.modes.base import ModeRequest, register_mode
from smart_onnx.report import SparsitySummary
from smart_onnx.rewrite import apply_block_masks
from smart_onnx.search import GroupedRanking, NMSpace

__all__ = ["DEFAULT_NM", "NMMode"]

DEFAULT_NM = (2, 4)  # without a target: what npu-2to4 runs


class NMMode:
    """N:M groups of the layers whose op the target gives the pattern, each group ranked by itself."""

    name = "nm"
    checker_rules = ("pattern", "dense")

    def __init__(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> None:
        profile = request.target
        if profile is None:
            self.space = NMSpace(analysis.layers, *(request.nm or DEFAULT_NM))
        else:
            pattern, layers = nm_layers(profile, analysis, request.nm)
            if pattern is None or not layers:
                asked = "" if request.nm is None else f"{request.nm[0]}:{request.nm[1]} "
                raise ConstraintError(
                    f"target {profile.name!r} allows no N:M pattern {asked}for any layer of this model")
            self.space = NMSpace(layers, *pattern)
        space = self.space
        if request.sparsity is not None and not math.isclose(request.sparsity, space.sparsity, abs_tol=1e-9):
            raise ConstraintError(
                f"N:M {space.n}:{space.m} prunes exactly {space.sparsity:.0%} of each weight; "
                f"`sparsity` {request.sparsity} contradicts it (leave `sparsity` out in nm mode)",
                parameters=("sparsity",),
            )
        self.sparsity = space.sparsity
        self.ranking = GroupedRanking(space)

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        return apply_block_masks(model, self.space.export(keep), sparse_format=sparse_format)

    def pattern(self) -> dict[str, Any]:
        return {"block": None, "nm": [self.space.n, self.space.m]}

    def sparsity_summary(self, keep: torch.Tensor, requested: float) -> SparsitySummary:
        """The pattern's sparsity: every group keeps exactly N of M (a ragged tail is not a prunable weight)."""
        return SparsitySummary(requested, self.space.sparsity, self.space.sparsity)


register_mode("nm", NMMode)  # nothing to refuse before the analysis: the pattern may be the target's
