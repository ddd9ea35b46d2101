"""Block mode: blocks of each layer's weight zeroed in place (the default).

The target's block per op (or one ``block`` for every layer), its dense-only layers and
``max_layer_sparsity`` become the space and the hard mask's constraints here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw import Profile, block_shapes, dense_reasons, format_block
from smart_onnx.hw.rules import fit_rank
from smart_onnx.model import OnnxModel
from smart_onnx.modes.base import GloballyRankedMode, ModeRequest, one_unit_per_group, register_mode
from smart_onnx.rewrite import apply_block_masks
from smart_onnx.search import BlockSpace, UnitConstraints

__all__ = ["DEFAULT_BLOCK", "BlockMode", "block_constraints"]

DEFAULT_BLOCK = (16, 8, 1, 1)  # without a target: what npu-block, the CLI's default target, runs


class BlockMode(GloballyRankedMode):
    """Blocks of every prunable layer the target gives a block, ranked globally."""

    name = "block"
    checker_rules = ("pattern", "dense", "sparsity")
    space: BlockSpace

    def resolve(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> tuple[BlockSpace, UnitConstraints]:
        profile = request.target
        if profile is None:
            space = BlockSpace(analysis.layers, request.block or DEFAULT_BLOCK)
            return space, one_unit_per_group(space)
        shapes = block_shapes(profile, analysis)
        if request.block is not None:
            _check_block_allowed(profile, analysis.layers, shapes, request.block)
            shapes = dict.fromkeys(shapes, request.block)
        space = BlockSpace([lay for lay in analysis.layers if lay.name in shapes], shapes)
        return space, block_constraints(profile, space, analysis, kind=request.budget)

    def why_outside(self, profile: Profile | None, analysis: Analysis, layer: PrunableLayer) -> str:
        """Only a target leaves layers out: dense-only ones, and those whose op it gives no block."""
        if profile is None:
            return "no block fits it"
        reason = dense_reasons(profile, analysis.layers).get(layer.name)
        return reason or f"target {profile.name!r} gives {layer.op_type} no block"

    def what_stays(self, profile: Profile | None) -> str:
        if profile is None:
            return "every layer keeps a block"
        return (f"target {profile.name!r} keeps dense-only layers dense"
                + (f" and caps each layer at {profile.max_layer_sparsity:.0%} sparsity"
                   if profile.max_layer_sparsity < 1 else ""))

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        return apply_block_masks(model, self.space.export(keep), sparse_format=sparse_format)

    def pattern(self) -> dict[str, Any]:
        """Block shape per layer, in canonical O x I x k order as the user wrote it."""
        blocks = {lb.layer.name: [lb.units.block_shape[a] for a in lb.layer.canonical_axes] for lb in self.space.layers}
        return {"block": blocks, "nm": None}


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


register_mode("block", BlockMode, check=BlockMode.check)
