"""SMART search: the differentiable top-k, pruning units and spaces, the search loop and baselines."""

from smart_onnx.search.config import BUDGETS, METHODS, SearchConfig, UnitConstraints
from smart_onnx.search.ranking import (
    GlobalRanking,
    GroupedRanking,
    Ranking,
    achieved_sparsity,
    harden_to_target,
    sparsest_mask,
)
from smart_onnx.search.records import History, PruneSeconds, RefitLog, TrainingLog
from smart_onnx.search.search import SearchResult, StepInfo, run_search
from smart_onnx.search.soft_topk import (
    SoftTopK,
    hard_topk,
    hard_topk_grouped,
    soft_topk,
    soft_topk_grouped,
    solve_threshold,
)
from smart_onnx.search.space import BlockSpace, ChannelSpace, NMSpace, PruningSpace, parse_block
from smart_onnx.search.trainer import DenseRunner
from smart_onnx.search.units import BlockUnits, ChannelTarget, ChannelUnits, NMUnits

__all__ = [
    "BUDGETS",
    "METHODS",
    "BlockSpace",
    "BlockUnits",
    "ChannelSpace",
    "ChannelTarget",
    "ChannelUnits",
    "DenseRunner",
    "GlobalRanking",
    "GroupedRanking",
    "History",
    "NMSpace",
    "NMUnits",
    "PruneSeconds",
    "PruningSpace",
    "Ranking",
    "RefitLog",
    "SearchConfig",
    "SearchResult",
    "SoftTopK",
    "StepInfo",
    "TrainingLog",
    "UnitConstraints",
    "achieved_sparsity",
    "hard_topk",
    "hard_topk_grouped",
    "harden_to_target",
    "parse_block",
    "run_search",
    "soft_topk",
    "soft_topk_grouped",
    "solve_threshold",
    "sparsest_mask",
]
