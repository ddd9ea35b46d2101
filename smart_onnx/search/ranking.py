"""How a space's unit scores become masks: the soft mask the search trains through, the hard mask it ends with.

Two rankings cover the three modes:

* :class:`GlobalRanking` (block and channel mode): one soft top-k over all units of all
  layers under a cost budget, hardened by the exact top-K under the caller's constraints,
  with the keep fraction found by bisection on the achieved sparsity;
* :class:`GroupedRanking` (N:M mode): each group of M keeps its N best; no budget to share.

A mode picks one (see :mod:`smart_onnx.modes`); :func:`smart_onnx.search.run_search` only
calls the :class:`Ranking` interface, so a new ranking needs no change to the search loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.search.config import SearchConfig, UnitConstraints
from smart_onnx.search.soft_topk import _group_minimum, hard_topk, hard_topk_grouped, soft_topk, soft_topk_grouped
from smart_onnx.search.space import NMSpace, PruningSpace

__all__ = [
    "GlobalRanking", "GroupedRanking", "Ranking", "SoftMask", "achieved_sparsity", "harden_to_target", "sparsest_mask",
]


@dataclass(frozen=True)
class SoftMask:
    """The search's differentiable mask of the scores at a temperature, and the sparsity a mask stands for."""

    mask: Callable[[torch.Tensor, float], torch.Tensor]
    sparsity: Callable[[torch.Tensor], float]


class Ranking:
    """Scores -> masks over ``space``; every mask is a flat ``[space.num_units]`` tensor."""

    space: PruningSpace

    def check(self, config: SearchConfig) -> None:
        """Raise ConstraintError when the space leaves nothing to prune, or ``config`` lacks what the ranking needs."""
        raise NotImplementedError

    def fixed_mask(self, weights: Mapping[str, torch.Tensor], config: SearchConfig) -> torch.Tensor:
        """The baselines' hard mask (``magnitude``, ``uniform``, ``random``), from fixed scores."""
        raise NotImplementedError

    def soft_mask(self, initial: torch.Tensor, config: SearchConfig, device: torch.device | str) -> SoftMask:
        """SMART's soft mask, set up from the initial scores (e.g. the budget they meet once hardened)."""
        raise NotImplementedError

    def harden(self, scores: torch.Tensor, config: SearchConfig) -> torch.Tensor:
        """The bool hard mask of the searched scores."""
        raise NotImplementedError

    def locked(self) -> torch.Tensor | None:
        """Bool ``[num_units]``: units whose state nothing after hardening may change (None: no such unit)."""
        return None


class GlobalRanking(Ranking):
    """All units ranked together under a cost budget (block and channel mode)."""

    def __init__(self, space: PruningSpace, constraints: UnitConstraints | None = None) -> None:
        self.space = space
        self.constraints = constraints or UnitConstraints()

    def check(self, config: SearchConfig) -> None:
        _requested(config)
        if self.space.num_units == 0 or float(self.space.costs(config.budget).sum()) <= 0:
            raise ConstraintError(
                "the model has no prunable units in this mode (every layer or group is frozen or dense)")

    def fixed_mask(self, weights: Mapping[str, torch.Tensor], config: SearchConfig) -> torch.Tensor:
        if config.method == "random":
            scores = torch.rand(self.space.num_units, generator=torch.Generator().manual_seed(config.seed))
        else:
            scores = self.space.magnitude_scores(weights)
        return harden_to_target(self.space, scores, self.space.costs(config.budget), config, self.constraints)[0]

    def soft_mask(self, initial: torch.Tensor, config: SearchConfig, device: torch.device | str) -> SoftMask:
        costs = self.space.costs(config.budget)
        total = float(costs.sum())
        # The soft budget that, hardened on the initial scores, removes the requested sparsity.
        budget = harden_to_target(self.space, initial, costs, config, self.constraints, method="smart")[1] * total
        costs_dev = costs.to(device)
        return SoftMask(
            mask=lambda scores, tau: soft_topk(scores, costs_dev, budget, tau),
            sparsity=lambda p: 1.0 - float((costs_dev * (p.detach() > 0.5)).sum()) / total,
        )

    def harden(self, scores: torch.Tensor, config: SearchConfig) -> torch.Tensor:
        return harden_to_target(self.space, scores, self.space.costs(config.budget), config, self.constraints)[0]

    def locked(self) -> torch.Tensor | None:
        keep = self.constraints.keep
        return None if keep is None else keep.detach().cpu().bool()


class GroupedRanking(Ranking):
    """Every N:M group keeps its N best (N:M mode); the sparsity is the pattern's, whatever the scores."""

    def __init__(self, space: NMSpace) -> None:
        self.space = space
        self.n = space.n

    def check(self, config: SearchConfig) -> None:
        if not self.space.layers:
            raise ConstraintError(f"no layer has an input axis of at least M={self.space.m} weights for N:M pruning")

    def _hard(self, per_layer: list[torch.Tensor]) -> torch.Tensor:
        parts = [hard_topk_grouped(s, self.n).reshape(-1) for s in per_layer]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)

    def fixed_mask(self, weights: Mapping[str, torch.Tensor], config: SearchConfig) -> torch.Tensor:
        scores = self.space.per_layer(self.space.magnitude_scores(weights))
        if config.method == "random":  # one draw per layer, in layer order, from one generator
            gen = torch.Generator().manual_seed(config.seed)
            scores = [torch.rand(s.shape, generator=gen) for s in scores]
        return self._hard(scores)  # magnitude and uniform coincide: N of every M by |w|

    def soft_mask(self, initial: torch.Tensor, config: SearchConfig, device: torch.device | str) -> SoftMask:
        m = self.space.m
        return SoftMask(
            # Every layer's groups are rows of one [G, M] view of the flat scores, as NMSpace numbers them; rows
            # are ranked independently, so one call over all of them is the per-layer masks concatenated.
            mask=lambda scores, tau: soft_topk_grouped(scores.view(-1, m), self.n, tau).reshape(-1),
            sparsity=lambda _: self.space.sparsity,
        )

    def harden(self, scores: torch.Tensor, config: SearchConfig) -> torch.Tensor:
        return self._hard(self.space.per_layer(scores))


def achieved_sparsity(space: PruningSpace, keep: torch.Tensor, budget: str) -> float:
    """Exact fraction of the prunable weights (or MACs) a hard mask removes."""
    kept, total = space.kept(keep), space.totals()
    i = 1 if budget == "macs" else 0
    return 1.0 - kept[i] / total[i] if total[i] > 0 else 0.0


def sparsest_mask(space: PruningSpace, constraints: UnitConstraints, budget: str = "params") -> torch.Tensor:
    """The hard mask that keeps the least ``constraints`` allow: what the most sparse ranking could remove.

    The forced keeps, then each group's minimum in ``budget``'s cost (units in index order, all
    scores equal), then ``constraints.adjust``. A mode checks a request against it before searching.
    """
    keep = (torch.zeros(space.num_units, dtype=torch.bool) if constraints.keep is None
            else constraints.keep.detach().cpu().bool().clone())
    if constraints.group_min_keep is not None and space.num_units:
        costs = space.costs(budget)
        keep |= _group_minimum(torch.arange(space.num_units), costs, space.unit_group, constraints.group_min_keep,
                               keep)
    return constraints.adjust(keep, torch.zeros(space.num_units)) if constraints.adjust else keep


def _harden(
    space: PruningSpace, scores: torch.Tensor, costs: torch.Tensor, keep_fraction: float, method: str,
    constraints: UnitConstraints,
) -> torch.Tensor:
    """Hard mask keeping ``keep_fraction`` of the unit cost: globally, or per layer/group for ``uniform``."""
    keep = _harden_unadjusted(space, scores, costs, keep_fraction, method, constraints)
    return constraints.adjust(keep, scores) if constraints.adjust else keep


def _harden_unadjusted(
    space: PruningSpace, scores: torch.Tensor, costs: torch.Tensor, keep_fraction: float, method: str,
    constraints: UnitConstraints,
) -> torch.Tensor:
    group = space.unit_group if constraints.group_min_keep is not None else None
    if method != "uniform":
        return hard_topk(scores.cpu(), costs, keep_fraction * float(costs.sum()), keep=constraints.keep,
                         group=group, group_min_keep=constraints.group_min_keep)
    keep = torch.zeros(space.num_units, dtype=torch.bool)
    for g in range(len(space.group_names)):
        sel = (space.unit_group == g).nonzero().flatten()
        one_group = constraints.group_min_keep is not None
        keep[sel] = hard_topk(
            scores[sel].cpu(), costs[sel], keep_fraction * float(costs[sel].sum()),
            keep=None if constraints.keep is None else constraints.keep[sel],
            group=torch.zeros(len(sel), dtype=torch.long) if one_group else None,
            group_min_keep=constraints.group_min_keep[g:g + 1] if one_group else None,
        )
    return keep


def _requested(config: SearchConfig) -> float:
    """The sparsity a globally ranked search must meet: one must be given (only an N:M pattern fixes its own)."""
    if config.sparsity is None:
        raise ConstraintError("`sparsity` is required to rank units globally (block and channel mode)",
                              parameters=("sparsity",))
    return config.sparsity


def harden_to_target(
    space: PruningSpace, scores: torch.Tensor, costs: torch.Tensor, config: SearchConfig,
    constraints: UnitConstraints, method: str | None = None,
) -> tuple[torch.Tensor, float]:
    """The hard mask, and the keep fraction of unit cost, that removes at least the requested sparsity.

    Unit costs can overlap (channel mode), so the keep fraction that meets the target is
    found by bisection on the exact achieved sparsity; the result removes the requested
    fraction or slightly more (by less than one unit's cost, up to the overlap).

    Raises:
        ConstraintError: no sparsity requested, or the constraints keep more than it allows.
    """
    requested = _requested(config)
    method = method or config.method
    lo, hi = 0.0, 1.0  # keep fractions: lo meets the target, hi does not (or is the dense end)
    best: torch.Tensor | None = None
    best_frac = 0.0
    dense = _harden(space, scores, costs, 1.0, method, constraints)
    if achieved_sparsity(space, dense, config.budget) >= requested - 1e-12:
        return dense, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        try:
            keep = _harden(space, scores, costs, mid, method, constraints)
        except ConstraintError:  # constraints need more than this budget: move towards dense
            lo = mid
            continue
        if achieved_sparsity(space, keep, config.budget) >= requested - 1e-12:
            best, best_frac, lo = keep, mid, mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    if best is None:
        keep = _harden(space, scores, costs, hi, method, constraints)
        got = achieved_sparsity(space, keep, config.budget)
        raise ConstraintError(
            f"the constraints allow at most {got:.1%} sparsity ({config.budget}), less than the requested "
            f"{requested:.1%}; lower `sparsity` or relax the profile", parameters=("sparsity",)
        )
    return best, best_frac
