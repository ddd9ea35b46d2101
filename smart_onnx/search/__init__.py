"""SMART search: the differentiable top-k, pruning units and spaces, the search loop and baselines."""

from smart_onnx.search.search import (
    METHODS,
    SearchConfig,
    SearchResult,
    StepInfo,
    UnitConstraints,
    achieved_sparsity,
    run_search,
)
from smart_onnx.search.soft_topk import (
    SoftTopK,
    hard_topk,
    hard_topk_grouped,
    soft_topk,
    soft_topk_grouped,
    solve_threshold,
)
from smart_onnx.search.space import BlockSpace, ChannelSpace, NMSpace, PruningSpace, parse_block
from smart_onnx.search.units import BlockUnits, ChannelTarget, ChannelUnits, NMUnits

__all__ = [
    "METHODS",
    "BlockSpace",
    "BlockUnits",
    "ChannelSpace",
    "NMSpace",
    "PruningSpace",
    "SearchConfig",
    "SearchResult",
    "StepInfo",
    "UnitConstraints",
    "achieved_sparsity",
    "parse_block",
    "run_search",
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
