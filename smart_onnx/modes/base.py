"""The pruning-mode protocol, the request a mode is built from, and the registry of modes.

A mode is built once from the caller's request and the model's analysis; from then on the
pipeline only calls the protocol: the space and ranking go to the search, the hard mask to
:meth:`PruningMode.rewrite`, and :meth:`PruningMode.sparsity_summary` plus
:attr:`PruningMode.pattern` to the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Protocol

import torch

from smart_onnx.errors import ConstraintError, InternalError
from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw import RULES, Profile
from smart_onnx.model import OnnxModel
from smart_onnx.report import SparsitySummary
from smart_onnx.search import GlobalRanking, PruningSpace, Ranking, UnitConstraints, sparsest_mask

__all__ = [
    "Coverage", "GloballyRankedMode", "ModeBuilder", "ModeFactory", "ModeRequest", "PruningMode", "coverage",
    "fit_budget", "least_kept_per_group", "mode_builder", "one_unit_per_group", "ranked_sparsity", "register_mode",
    "registered_modes", "require_sparsity",
]


@dataclass(frozen=True)
class ModeRequest:
    """What the caller asks for; each field None means "the target's" (or the mode's default without one).

    Attributes:
        mode: the mode's name (None: the target's mode; block without a target).
        block: one block shape, canonical O x I x k..., for every layer (block mode).
        nm: one N:M pattern (N:M mode).
        target: the hardware profile the result must pass.
        sparsity: the requested fraction removed (None: only N:M, whose pattern fixes it).
        budget: what the sparsity counts, ``"params"`` or ``"macs"``.
    """

    mode: str | None = None
    block: tuple[int, ...] | None = None
    nm: tuple[int, int] | None = None
    target: Profile | None = None
    sparsity: float | None = None
    budget: str = "params"


class PruningMode(Protocol):
    """One pruning mode over one model, resolved against the request and the target.

    Attributes:
        name: the mode's registered name (``"block"``, ``"channel"``, ``"nm"``).
        space: the units the search scores; every hard mask is a bool ``[space.num_units]`` tensor.
        ranking: how the space's scores become soft and hard masks, under the target's constraints.
        requested: the requested sparsity, a fraction of *all* prunable weights (or MACs) of the model
            (N:M without a request: what the pattern removes of them).
        sparsity: what the search aims for, a fraction of the weights (or MACs) the space's units hold:
            ``requested`` converted where frozen groups or layers outside the target hold the rest
            (N:M: the pattern's).
        checker_rules: the rules of :data:`smart_onnx.hw.RULES` the output is judged by (``prune`` passes them
            to :func:`smart_onnx.hw.check_model`); the mode's class declares them, checked when it is registered.
    """

    name: str
    space: PruningSpace
    ranking: Ranking
    requested: float
    sparsity: float
    checker_rules: tuple[str, ...]

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        """The model (with trained weights) with the hard mask applied: blocks zeroed or channels removed."""
        ...

    def pattern(self) -> dict[str, Any]:
        """The report's ``block`` and ``nm`` entries (None where the mode has none)."""
        ...

    def sparsity_summary(self, keep: torch.Tensor) -> SparsitySummary:
        """The report's ``sparsity``: requested, achieved of all prunable weights and MACs (and the budget kind)."""
        ...


class ModeFactory(Protocol):
    """What builds a mode (the mode's class): called with the request, analysis and model; declares its rules."""

    checker_rules: tuple[str, ...]

    def __call__(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> PruningMode:
        ...


# name -> the mode's builder: (request, analysis, model) -> PruningMode, its rules and its request check.
_BUILDERS: dict[str, ModeBuilder] = {}


@dataclass(frozen=True)
class ModeBuilder:
    """How a registered mode is made.

    Attributes:
        check: refuses a request before any model work (e.g. a missing sparsity).
        build: makes the mode for one analysed model.
        checker_rules: the rules of :data:`smart_onnx.hw.RULES` every model of this mode is judged by.
    """

    check: Callable[[ModeRequest], None]
    build: ModeFactory
    checker_rules: tuple[str, ...]


def register_mode(name: str, build: ModeFactory, *, check: Callable[[ModeRequest], None] | None = None) -> None:
    """Register a mode under ``name`` (at import of its module; registering a name twice is a bug).

    Args:
        name: what ``--mode`` and a profile's ``mode`` call it.
        build: makes the mode for one analysed model (the mode's class), and declares ``checker_rules``.
        check: refuses a request before any model work (e.g. a missing sparsity); None: nothing to refuse.

    Raises:
        InternalError: ``name`` is registered already, or ``build`` declares no checker rules or one that
            :data:`smart_onnx.hw.RULES` does not have (a mode judged by a rule the checker never applies
            would pass whatever it wrote).
    """
    if name in _BUILDERS:
        raise InternalError(f"pruning mode {name!r} is registered twice")
    rules = tuple(getattr(build, "checker_rules", ()))
    unknown = [rule for rule in rules if rule not in RULES]
    if not rules or unknown:
        raise InternalError(f"pruning mode {name!r} must declare checker_rules from {list(RULES)}; "
                            + (f"it declares {unknown}, which the checker does not have" if unknown
                               else "it declares none"))
    _BUILDERS[name] = ModeBuilder(check=check or (lambda request: None), build=build, checker_rules=rules)


def registered_modes() -> tuple[str, ...]:
    return tuple(_BUILDERS)


def mode_builder(name: str) -> ModeBuilder:
    """The builder of the mode ``name``.

    Raises:
        ConstraintError: no such mode.
    """
    if name not in _BUILDERS:
        raise ConstraintError(f"unknown mode {name!r}; choose one of {list(_BUILDERS)}")
    return _BUILDERS[name]


# --------------------------------------------------------------------------- shared by the modes


def require_sparsity(name: str, request: ModeRequest) -> None:
    """A mode whose sparsity is free needs one asked for."""
    if request.sparsity is None:
        raise ConstraintError(f"`sparsity` is required in {name} mode", parameters=("sparsity",))


def least_kept_per_group(space: PruningSpace) -> torch.Tensor:
    """Per group, the cost of its cheapest unit: without a target every layer or group keeps at least one unit."""
    least = torch.zeros(len(space.group_names), dtype=torch.float64)
    return least.scatter_reduce_(0, space.unit_group, space.costs("params"), "amin", include_self=False)


def one_unit_per_group(space: PruningSpace,
                       adjust: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> UnitConstraints:
    """The constraints without a target: every layer or group keeps at least one unit (then ``adjust``)."""
    if not space.num_units:  # nothing to keep: the ranking's check refuses the empty space
        return UnitConstraints()
    return UnitConstraints(group_min_keep=least_kept_per_group(space), adjust=adjust)


@dataclass(frozen=True)
class Coverage:
    """What a mode's units hold of the model's prunable weights and MACs, and the least they must keep.

    ``sparsity`` counts *all* prunable weights (each prunable layer's weight tensor once, as the
    spaces and the summary's "prunable weights" line count them); a mode whose units hold less
    (frozen channel groups, layers outside the target's pattern) searches a larger fraction of its own.

    Attributes:
        total: ``(weights, MACs)`` of every prunable layer.
        searched: ``(weights, MACs)`` the space's units hold.
        least_kept: ``(weights, MACs)`` the space keeps at least under the constraints (:func:`sparsest_mask`).
        outside: ``(layer, why)`` for each prunable layer no unit reaches.
    """

    total: tuple[float, float]
    searched: tuple[float, float]
    least_kept: tuple[float, float]
    outside: tuple[tuple[str, str], ...]

    def most(self, budget: str) -> float:
        """The largest fraction of all prunable weights (or MACs) the constraints let a mask remove."""
        i = _kind(budget)
        return (self.searched[i] - self.least_kept[i]) / self.total[i] if self.total[i] > 0 else 0.0

    def of_all(self, kept: tuple[float, float], budget: str) -> float:
        """Fraction of all prunable weights (or MACs) removed when the space keeps ``kept``."""
        i = _kind(budget)
        return (self.searched[i] - kept[i]) / self.total[i] if self.total[i] > 0 else 0.0

    def of_searched(self, fraction_of_all: float, budget: str) -> float:
        """The fraction of the searched units' weights (or MACs) that removes ``fraction_of_all`` of all of them."""
        i = _kind(budget)
        return fraction_of_all * self.total[i] / self.searched[i] if self.searched[i] > 0 else fraction_of_all

    def describe_outside(self, limit: int = 2) -> str:
        """The layers no unit reaches, the first ``limit`` with why, for a one-line message."""
        named = "; ".join(f"{layer!r}: {why}" for layer, why in self.outside[:limit])
        more = len(self.outside) - limit
        return named + (f"; and {more} more layer{'s' if more > 1 else ''}" if more > 0 else "")


def _kind(budget: str) -> int:
    return 1 if budget == "macs" else 0


def coverage(space: PruningSpace, analysis: Analysis, least_kept: torch.Tensor,
             why: Callable[[PrunableLayer], str]) -> Coverage:
    """The space's :class:`Coverage` of the model; ``least_kept`` is the sparsest hard mask allowed, ``why`` says
    why a prunable layer is outside the space."""
    weights: dict[str, PrunableLayer] = {}
    for layer in analysis.layers:  # a tied weight once, with its first layer's MACs (as the spaces count it)
        weights.setdefault(layer.weight, layer)
    total = (float(sum(math.prod(lay.weight_shape) for lay in weights.values())),
             float(sum(lay.macs or 0 for lay in weights.values())))
    searched = space.totals()
    # Tensors a space counts beyond the prunable layers' weights (none in practice) would make "all" too small.
    total = (max(total[0], searched[0]), max(total[1], searched[1]))
    reached = {lay.weight for lay in space.scored_layers}
    outside = tuple((lay.name, why(lay)) for lay in weights.values() if lay.weight not in reached)
    return Coverage(total, searched, space.kept(least_kept), outside)


def fit_budget(
    name: str, request: ModeRequest, analysis: Analysis, space: PruningSpace, constraints: UnitConstraints,
    why: Callable[[PrunableLayer], str], minimum: str,
) -> tuple[float, Coverage]:
    """The sparsity a globally ranked search aims for over its units, so that ``request.sparsity`` of *all*
    prunable weights (or MACs) go, and the space's coverage.

    Args:
        name: the mode's name, for the message.
        request: the request; its ``sparsity`` is a fraction of all prunable weights (MACs with ``budget="macs"``).
        analysis: the model's analysis.
        space: the mode's units.
        constraints: the hard mask's constraints (what the units must keep at least).
        why: why a prunable layer is outside ``space``.
        minimum: what the constraints keep, in words (``"every channel group keeps a channel"``).

    Raises:
        ConstraintError: the request is out of reach: frozen groups or layers outside the target hold too much,
            or the constraints' minimums keep too much; the message says the most that can be removed.
    """
    requested = float(request.sparsity)  # type: ignore[arg-type]  # require_sparsity refused None
    cover = coverage(space, analysis, sparsest_mask(space, constraints, request.budget), why)
    i = _kind(request.budget)
    if cover.searched[i] <= 0:  # nothing to search: the ranking's check says so
        return requested, cover
    most = cover.most(request.budget)
    searched = cover.of_searched(requested, request.budget)
    if requested > most + 1e-9 or searched >= 1.0:
        parts = []
        if cover.outside:
            n = len(cover.outside)
            parts.append(f"{1.0 - cover.searched[i] / cover.total[i]:.1%} sit in {n} layer{'s' if n > 1 else ''} "
                         f"it cannot prune: {cover.describe_outside()}")
        if cover.least_kept[i] > 0:
            parts.append(f"{cover.least_kept[i] / cover.total[i]:.1%} stay because {minimum}")
        raise ConstraintError(
            f"`sparsity` {requested:g} is out of reach in {name} mode: at most {most:.1%} of this model's prunable "
            f"{'MACs' if i else 'weights'} can be removed ({'; and '.join(parts)}); "
            f"ask for at most {math.floor(most * 1000) / 1000:g}",
            parameters=("sparsity",),
        )
    return searched, cover


def ranked_sparsity(space: PruningSpace, keep: torch.Tensor, requested: float, budget: str,
                    cover: Coverage) -> SparsitySummary:
    """The report's ``sparsity`` of a globally ranked mode: exact, of all prunable weights and MACs, what the budget
    counted, and (where the units hold less than all) the fraction of the searched units' own."""
    kept = space.kept(keep)
    searched = None
    if abs(cover.searched[_kind(budget)] - cover.total[_kind(budget)]) > 1e-9 * cover.total[_kind(budget)]:
        i = _kind(budget)
        searched = 1.0 - kept[i] / cover.searched[i] if cover.searched[i] > 0 else 0.0
    return SparsitySummary(requested, cover.of_all(kept, "params"), cover.of_all(kept, "macs"), budget, searched)


class GloballyRankedMode:
    """What the modes whose units are ranked together against a requested sparsity share (block, channel).

    A subclass says how its space and the hard mask's constraints come from the request
    (:meth:`resolve`), why a prunable layer is outside its space (:meth:`why_outside`), and what the
    constraints keep at least, in words (:meth:`what_stays`); it adds ``rewrite`` and ``pattern``.
    This class refuses a missing sparsity, converts the request (of *all* prunable weights) into what
    the search aims for over the units (:func:`fit_budget`), ranks the units globally, and states the
    report's sparsity (:func:`ranked_sparsity`).
    """

    name: ClassVar[str]
    checker_rules: ClassVar[tuple[str, ...]]

    def __init__(self, request: ModeRequest, analysis: Analysis, model: OnnxModel) -> None:
        self.check(request)
        self.requested = float(request.sparsity)  # type: ignore[arg-type]  # check refused None
        self.budget = request.budget
        self.space, constraints = self.resolve(request, analysis, model)
        self.sparsity, self.coverage = fit_budget(
            self.name, request, analysis, self.space, constraints,
            partial(self.why_outside, request.target, analysis), self.what_stays(request.target))
        self.ranking = GlobalRanking(self.space, constraints)

    @classmethod
    def check(cls, request: ModeRequest) -> None:
        """Refuses a request without a sparsity: in these modes it is free (what ``register_mode`` calls)."""
        require_sparsity(cls.name, request)

    def resolve(self, request: ModeRequest, analysis: Analysis,
                model: OnnxModel) -> tuple[PruningSpace, UnitConstraints]:
        """The space the search scores and the hard mask's constraints, under the request's target (if any)."""
        raise NotImplementedError

    def why_outside(self, profile: Profile | None, analysis: Analysis, layer: PrunableLayer) -> str:
        """Why no unit of the space reaches ``layer`` (for the out-of-reach message)."""
        raise NotImplementedError

    def what_stays(self, profile: Profile | None) -> str:
        """What the constraints keep at least, in words (``"every channel group keeps a channel"``)."""
        raise NotImplementedError

    def sparsity_summary(self, keep: torch.Tensor) -> SparsitySummary:
        return ranked_sparsity(self.space, keep, self.requested, self.budget, self.coverage)
