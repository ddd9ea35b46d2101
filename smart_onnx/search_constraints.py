"""A hardware profile as constraints on the search's hard mask (see ``hard_topk``).

Outside :mod:`smart_onnx.hw`, which stays free of torch, the search and the rewriter.

How each profile rule reaches the search:

* block shapes / N:M patterns: choose the units (:func:`smart_onnx.hw.rules.block_shapes`,
  :func:`smart_onnx.hw.rules.nm_layers`);
* dense-only layers: no units when the space is built from ``block_shapes``; a block space
  built over them anyway gets their units as forced keeps (:func:`unit_constraints`). In
  channel mode dense-only layers constrain nothing: removing channels leaves every weight
  dense, and freezing their groups would freeze whole residual stages;
* ``max_layer_sparsity``: a per-group minimum kept cost, ``(1 - max) x`` the cost of the
  group's units (block mode: a group is one layer, so this is exact; channel mode: a group
  is a coupling group, so it bounds the fraction of the group's channel cost removed, not
  the sparsity of a consumer layer whose input and output groups are both cut);
* ``min_channels`` and ``channel_alignment`` (channel mode): a per-group minimum kept cost
  from the smallest count alignment can produce (:func:`min_kept_channels`), then
  :func:`align_channel_keep` rounds every group's kept count after hardening.
"""

from __future__ import annotations

import torch

from smart_onnx.graph import Analysis
from smart_onnx.hw.constraints import Profile
from smart_onnx.hw.rules import dense_reasons
from smart_onnx.rewrite import round_channels
from smart_onnx.search import BlockSpace, ChannelSpace, NMSpace, UnitConstraints

__all__ = ["align_channel_keep", "min_kept_channels", "unit_constraints"]


def min_kept_channels(profile: Profile, channels: int) -> int:
    """The fewest channels a group of ``channels`` may keep under the profile.

    The smallest multiple of ``channel_alignment`` that is at least ``min_channels``; all
    channels when no such multiple fits (``round_channels`` keeps such a group whole).
    """
    return round_channels(0, multiple=profile.channel_alignment, minimum=profile.min_channels, total=channels)


def unit_constraints(
    profile: Profile,
    space: BlockSpace | ChannelSpace | NMSpace,
    analysis: Analysis | None = None,
    *,
    kind: str = "params",
) -> UnitConstraints:
    """Forced keeps and per-group minimum kept cost for ``space`` under ``profile``.

    Args:
        profile: the target.
        space: a block or channel space (an N:M space has no cross-unit constraints and
            gets empty ones: its dense layers are simply left out, see ``nm_layers``).
        analysis: the model's analysis; needed in block mode to resolve ``first``/``last``
            when the space leaves layers out (else the space's own layers are used).
        kind: the cost the search budgets, ``"params"`` or ``"macs"`` (``SearchConfig.budget``);
            the minimums are in that unit, as ``hard_topk`` compares them with it.

    Returns:
        ``UnitConstraints(keep, group_min_keep)``; either may be None when nothing is forced.

    Channel minimum as a cost: ``hard_topk`` keeps a group's best units until their cost
    reaches the minimum, so the minimum is the cost of the group's ``n`` *most expensive*
    channels (``n`` from :func:`min_kept_channels`). Any ``n - 1`` channels cost less, so at
    least ``n`` are kept whatever the scores; with equal channel costs (the usual case) it
    keeps exactly ``n``.
    """
    if isinstance(space, NMSpace):
        return UnitConstraints()
    costs = space.costs(kind)
    groups = space.unit_group
    totals = torch.zeros(len(space.group_names), dtype=torch.float64).index_add_(0, groups, costs)
    minimum = (1.0 - profile.max_layer_sparsity) * totals
    if isinstance(space, BlockSpace):
        keep = _forced_block_keep(profile, space, analysis)
        if profile.max_layer_sparsity >= 1.0:
            return UnitConstraints(keep=keep)
        return UnitConstraints(keep=keep, group_min_keep=minimum)
    for i, group in enumerate(space.groups):
        mine = torch.sort(costs[groups == i], descending=True).values
        minimum[i] = max(float(minimum[i]), float(mine[: min_kept_channels(profile, group.channels)].sum()))
    return UnitConstraints(group_min_keep=minimum)


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
