"""Block mode: blocks of each layer's weight zeroed in place (the default).

The target's block per op (or one ``block`` for every layer), its dense-only layers and
``max_layer_sparsity`` become the space and the hard mask's constraints here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw import Profile, block_shapes, dense_reasons, format_block
from smart_onnx.hw.rules import fit_rank
from smart_onnx.model import OnnxModel
from smart_onnx.modes.base import (
    ModeRequest,
    fit_budget,
    least_kept_per_group,
    ranked_sparsity,
    register_mode,
    require_sparsity,
)
from smart_onnx.report import SparsitySummary
from smart_onnx.rewrite import apply_block_masks
from smart_onnx.search import BlockSpace, GlobalRanking, UnitConstraints

__all__ = ["DEFAULT_BLOCK", "BlockMode", "block_constraints"]

DEFAULT_BLOCK = (16, 8, 1, 1)  # without a target: what npu-block, the CLI's default target, runs


class BlockMode:
    """Blocks of every prunable layer the target gives a block, ranked globally."""

    name = "block"
    checker_rules = ("pattern", "dense", "sparsity")

    def __init__(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> None:
        require_sparsity(self.name, request)
        profile = request.target
        if profile is None:
            self.space = BlockSpace(analysis.layers, request.block or DEFAULT_BLOCK)
            constraints = (UnitConstraints(group_min_keep=least_kept_per_group(self.space))
                           if self.space.num_units else UnitConstraints())
        else:
            shapes = block_shapes(profile, analysis)
            if request.block is not None:
                _check_block_allowed(profile, analysis.layers, shapes, request.block)
                shapes = dict.fromkeys(shapes, request.block)
            self.space = BlockSpace([lay for lay in analysis.layers if lay.name in shapes], shapes)
            constraints = block_constraints(profile, self.space, analysis, kind=request.budget)
        self.requested = float(request.sparsity)  # type: ignore[arg-type]  # refused when None, above
        self.budget = request.budget
        # Of all prunable weights: layers the target leaves dense hold the rest.
        minimum = ("every layer keeps a block" if profile is None else
                   f"target {profile.name!r} keeps dense-only layers dense"
                   + (f" and caps each layer at {profile.max_layer_sparsity:.0%} sparsity"
                      if profile.max_layer_sparsity < 1 else ""))
        self.sparsity, self.coverage = fit_budget(self.name, request, analysis, self.space, constraints,
                                                  partial(_why_dense, profile, analysis), minimum)
        self.ranking = GlobalRanking(self.space, constraints)

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        return apply_block_masks(model, self.space.export(keep), sparse_format=sparse_format)

    def pattern(self) -> dict[str, Any]:
        """Block shape per layer, in canonical O x I x k order as the user wrote it."""
        blocks = {lb.layer.name: [lb.units.block_shape[a] for a in lb.layer.canonical_axes] for lb in self.space.layers}
        return {"block": blocks, "nm": None}

    def sparsity_summary(self, keep: torch.Tensor) -> SparsitySummary:
        return ranked_sparsity(self.space, keep, self.requested, self.budget, self.coverage)


def _why_dense(profile: Profile | None, analysis: Analysis, layer: PrunableLayer) -> str:
    """Why block mode leaves ``layer`` out of its space (only a target leaves layers out)."""
    if profile is None:
        return "no block fits it"
    reason = dense_reasons(profile, analysis.layers).get(layer.name)
    return reason or f"target {profile.name!r} gives {layer.op_type} no block"


def _check_block_allowed(
    profile: Profile, layers: list[PrunableLayer], shapes: Mapping[str, tuple[int, ...]], block: tuple[int, ...]
) -> None:
    """A --block the target cannot run would fail its own check: refuse it before the search."""
    for layer in layers:
        if layer.name not in shapes:
            continue
        rank = len(layer.weight_shape)
        allowed = {fit_rank(b, rank) for b in profile.rule_for(layer.op_type).blocks}
        if fit_rank(block, rank) not in allowed:
            names = ", ".join(sorted(format_block(b) for b in allowed))
            raise ConstraintError(
                f"block {format_block(block)} is not allowed by target {profile.name!r} for {layer.op_type} "
                f"(layer {layer.name!r} allows {names}); drop `block` or pass a `target` that allows it",
                parameters=("block", "target"),
            )


def block_constraints(
    profile: Profile, space: BlockSpace, analysis: Analysis | None = None, *, kind: str = "params"
) -> UnitConstraints:
    """Forced keeps and per-layer minimum kept cost for a block space under ``profile``.

    Args:
        profile: the target.
        space: the block space.
        analysis: the model's analysis; needed to resolve ``first``/``last`` when the space
            leaves layers out (else the space's own layers are used).
        kind: the cost the search budgets, ``"params"`` or ``"macs"`` (``SearchConfig.budget``);
            the minimums are in that unit, as ``hard_topk`` compares them with it.

    Returns:
        ``UnitConstraints(keep, group_min_keep)``: units of dense-only layers (and of layers
        whose op has no block) kept, and ``(1 - max_layer_sparsity)`` of each layer's cost;
        either may be None when nothing is forced.
    """
    keep = _forced_block_keep(profile, space, analysis)
    if profile.max_layer_sparsity >= 1.0:
        return UnitConstraints(keep=keep)
    costs = space.costs(kind)
    totals = torch.zeros(len(space.group_names), dtype=torch.float64).index_add_(0, space.unit_group, costs)
    return UnitConstraints(keep=keep, group_min_keep=(1.0 - profile.max_layer_sparsity) * totals)


def _forced_block_keep(profile: Profile, space: BlockSpace, analysis: Analysis | None) -> torch.Tensor | None:
    """Units of dense-only layers and of layers whose op the profile gives no block."""
    layers = list(analysis.layers) if analysis is not None else [lb.layer for lb in space.layers]
    dense = dense_reasons(profile, layers)
    dense_weights = {lay.weight for lay in layers if lay.name in dense}
    keep = torch.zeros(space.num_units, dtype=torch.bool)
    for lb in space.layers:
        if lb.layer.weight in dense_weights or not profile.rule_for(lb.layer.op_type).blocks:
            keep[lb.start:lb.end] = True
    return keep if bool(keep.any()) else None


register_mode("block", BlockMode, check=partial(require_sparsity, "block"))
