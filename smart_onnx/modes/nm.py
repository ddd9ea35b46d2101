"""N:M mode: N of every M consecutive weights along each layer's input axis kept.

The pattern (the request's, else the first the target allows for any layer) fixes the
sparsity, so the request's sparsity may only repeat it: what the pattern removes of *all*
prunable weights, which is less than ``1 - N/M`` where layers stay dense (outside the
target's pattern, fewer than M input weights) or an input axis ends in a ragged tail.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw import Profile, dense_reasons, nm_layers
from smart_onnx.model import OnnxModel
from smart_onnx.modes.base import ModeRequest, coverage, register_mode
from smart_onnx.report import SparsitySummary
from smart_onnx.rewrite import apply_block_masks
from smart_onnx.search import GroupedRanking, NMSpace

__all__ = ["DEFAULT_NM", "NMMode"]

DEFAULT_NM = (2, 4)  # without a target: what npu-2to4 runs
# A request agrees with the pattern within half a percentage point of what it removes of all prunable weights.
SHARE_TOLERANCE = 5e-3


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
        self.budget = request.budget
        self.coverage = coverage(space, analysis, _pattern_keep(space), partial(_why_dense, profile, analysis, space.m))
        share = self.coverage.of_all(space.kept(_pattern_keep(space)), request.budget)  # of all prunable weights
        if request.sparsity is not None and not math.isclose(request.sparsity, share, abs_tol=SHARE_TOLERANCE):
            what = "MACs" if request.budget == "macs" else "weights"
            of_all = ("" if math.isclose(share, space.sparsity, abs_tol=1e-9) else
                      f" it covers, {share:.1%} of this model's prunable {what}"
                      + (f" ({self.coverage.describe_outside()} stay dense)" if self.coverage.outside else ""))
            raise ConstraintError(
                f"N:M {space.n}:{space.m} prunes exactly {space.sparsity:.0%} of each weight{of_all}; "
                f"`sparsity` {request.sparsity} contradicts it (leave `sparsity` out in nm mode)",
                parameters=("sparsity",),
            )
        self.requested = share if request.sparsity is None else float(request.sparsity)
        self.sparsity = space.sparsity
        self.ranking = GroupedRanking(space)

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        return apply_block_masks(model, self.space.export(keep), sparse_format=sparse_format)

    def pattern(self) -> dict[str, Any]:
        return {"block": None, "nm": [self.space.n, self.space.m]}

    def sparsity_summary(self, keep: torch.Tensor) -> SparsitySummary:
        """Of all prunable weights: every group keeps exactly N of M; dense layers and ragged tails keep everything."""
        kept = self.space.kept(keep)
        cover = self.coverage
        searched = None if math.isclose(cover.searched[0], cover.total[0]) else self.space.sparsity
        return SparsitySummary(self.requested, cover.of_all(kept, "params"), cover.of_all(kept, "macs"),
                               searched=searched)


def _pattern_keep(space: NMSpace) -> torch.Tensor:
    """A mask that keeps N of every M (the first N): the pattern's exact kept weights and MACs."""
    return torch.arange(space.num_units) % space.m < space.n


def _why_dense(profile: Profile | None, analysis: Analysis, m: int, layer: PrunableLayer) -> str:
    """Why N:M mode leaves ``layer`` dense."""
    if layer.weight_shape[layer.in_axis] < m:
        return f"its input axis holds fewer than {m} weights"
    reason = dense_reasons(profile, analysis.layers).get(layer.name) if profile is not None else None
    return reason or f"target {profile.name if profile else None!r} gives {layer.op_type} no N:M pattern"


register_mode("nm", NMMode)  # nothing to refuse before the analysis: the pattern may be the target's
