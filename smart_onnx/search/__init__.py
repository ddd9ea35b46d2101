"""SMART search: the differentiable top-k, pruning units, and (later) the search loop."""

from smart_onnx.search.soft_topk import (
    SoftTopK,
    hard_topk,
    hard_topk_grouped,
    soft_topk,
    soft_topk_grouped,
    solve_threshold,
)
from smart_onnx.search.units import BlockUnits, ChannelTarget, ChannelUnits, NMUnits

__all__ = [
    "BlockUnits",
    "ChannelTarget",
    "ChannelUnits",
    "NMUnits",
    "SoftTopK",
    "hard_topk",
    "hard_topk_grouped",
    "soft_topk",
    "soft_topk_grouped",
    "solve_threshold",
]
