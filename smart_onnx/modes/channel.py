"""Channel mode: output channels of the coupling groups removed physically.

The target's ``min_channels``, ``channel_alignment`` and ``max_layer_sparsity`` become the
hard mask's constraints here, once. Dense-only layers constrain nothing in this mode:
removing channels leaves every weight dense, and freezing their groups would freeze whole
residual stages.
"""

from __future__ import annotations

from typing import Any

import torch

from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw import Profile
from smart_onnx.model import OnnxModel, iter_graphs
from smart_onnx.modes.base import GloballyRankedMode, ModeRequest, one_unit_per_group, register_mode
from smart_onnx.rewrite import apply_channel_masks, round_channels
from smart_onnx.search import ChannelSpace, UnitConstraints

__all__ = ["ChannelMode", "align_channel_keep", "channel_constraints", "min_kept_channels"]


class ChannelMode(GloballyRankedMode):
    """Channels of the prunable coupling groups, ranked globally; counts aligned to the target after hardening."""

    name = "channel"
    checker_rules = ("channels",)
    space: ChannelSpace

    def __init__(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> None:
        self.analysis = analysis  # the rewrite follows its coupling groups
        super().__init__(request, analysis, model)

    def resolve(self, request: ModeRequest, analysis: Analysis,
                model: OnnxModel) -> tuple[ChannelSpace, UnitConstraints]:
        shapes = {t.name: tuple(int(d) for d in t.dims) for g in iter_graphs(model.graph) for t in g.initializer}
        space = ChannelSpace(analysis, analysis.groups, shapes)
        profile = request.target
        if profile is None:  # every group keeps a channel, and no weight axis is emptied
            return space, one_unit_per_group(space, adjust=space.keep_every_axis)
        rules = channel_constraints(profile, space, kind=request.budget)

        def adjust(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            aligned = align_channel_keep(profile, space, space.keep_every_axis(keep, scores), scores)
            return space.keep_every_axis(aligned, scores)

        return space, UnitConstraints(rules.keep, rules.group_min_keep, adjust=adjust)

    def why_outside(self, profile: Profile | None, analysis: Analysis, layer: PrunableLayer) -> str:
        """The first frozen group ``layer`` belongs to: its channels are not searched."""
        group = next((g for g in analysis.frozen_groups if layer.name in g.layers), None)
        return f"group {group.id} is frozen: {group.frozen}" if group else "no channel group reaches it"

    def what_stays(self, profile: Profile | None) -> str:
        if profile is None:
            return "every channel group keeps a channel"
        return (f"target {profile.name!r} keeps at least {profile.min_channels} channels per group, aligned to "
                f"{profile.channel_alignment}" + (f", and caps each group at {profile.max_layer_sparsity:.0%} "
                                                  "sparsity" if profile.max_layer_sparsity < 1 else ""))

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        """Channels removed; ``sparse_format`` does not apply (what is left is dense)."""
        return apply_channel_masks(model, self.analysis, self.space.export(keep))

    def pattern(self) -> dict[str, Any]:
        return {"block": None, "nm": None}


def min_kept_channels(profile: Profile, channels: int) -> int:
    """The fewest channels a group of ``channels`` may keep under the profile.

    The smallest multiple of ``channel_alignment`` that is at least ``min_channels``; all
    channels when no such multiple fits (``round_channels`` keeps such a group whole).
    """
    return round_channels(0, multiple=profile.channel_alignment, minimum=profile.min_channels, total=channels)


def channel_constraints(profile: Profile, space: ChannelSpace, *, kind: str = "params") -> UnitConstraints:
    """Per-group minimum kept cost for a channel space under ``profile``.

    ``max_layer_sparsity`` bounds the fraction of each coupling group's channel cost removed
    (not the sparsity of a consumer whose input and output groups are both cut);
    ``min_channels`` and ``channel_alignment`` give the smallest count a group may keep.

    Channel minimum as a cost: ``hard_topk`` keeps a group's best units until their cost
    reaches the minimum, so the minimum is the cost of the group's ``n`` *most expensive*
    channels (``n`` from :func:`min_kept_channels`). Any ``n - 1`` channels cost less, so at
    least ``n`` are kept whatever the scores; with equal channel costs (the usual case) it
    keeps exactly ``n``.

    Args:
        profile: the target.
        space: the channel space.
        kind: the cost the search budgets, ``"params"`` or ``"macs"``; the minimums are in that unit.
    """
    costs = space.costs(kind)
    groups = space.unit_group
    totals = torch.zeros(len(space.group_names), dtype=torch.float64).index_add_(0, groups, costs)
    minimum = (1.0 - profile.max_layer_sparsity) * totals
    for i, group in enumerate(space.groups):
        mine = torch.sort(costs[groups == i], descending=True).values
        minimum[i] = max(float(minimum[i]), float(mine[: min_kept_channels(profile, group.channels)].sum()))
    return UnitConstraints(group_min_keep=minimum)


def align_channel_keep(profile: Profile, space: ChannelSpace, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Round every group's kept-channel count to what the profile accepts.

    Each group's count goes to the nearest allowed count (``round_channels``: a multiple
    of ``channel_alignment``, at least ``min_channels``, or the group's whole channel
    count; a tie rounds up). Rounding down drops the group's lowest-scoring kept channels;
    rounding up adds its best-scoring pruned ones. A group whose channel count is not a
    multiple of the alignment ends with an aligned count or all its channels; one with no
    aligned count between ``min_channels`` and its size keeps all its channels.

    The achieved sparsity moves by less than half an alignment step per group; recompute it
    (``achieved_sparsity``) after aligning.

    Args:
        profile: the target.
        space: the channel space the mask is over.
        keep: ``[num_units]`` bool hard mask.
        scores: ``[num_units]`` unit scores (higher is more important).

    Returns:
        A new ``[num_units]`` bool mask.
    """
    keep = keep.detach().cpu().bool()
    scores = scores.detach().cpu().to(torch.float64)
    out = keep.clone()
    for i, group in enumerate(space.groups):
        sel = (space.unit_group == i).nonzero().flatten()
        count = int(keep[sel].sum())
        target = round_channels(count, multiple=profile.channel_alignment, minimum=profile.min_channels,
                                total=group.channels)
        if target == count:
            continue
        # Kept channels first, then by score: the first `target` keep the kept set's best part or extend it.
        rank = torch.sort(scores[sel], descending=True, stable=True).indices
        rank = rank[torch.sort((~keep[sel][rank]).to(torch.int8), stable=True).indices]
        out[sel] = False
        out[sel[rank[:target]]] = True
    return out


register_mode("channel", ChannelMode, check=ChannelMode.check)
