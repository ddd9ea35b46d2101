"""The pruning-mode protocol, the request a mode is built from, and the registry of modes.

A mode is built once from the caller's request and the model's analysis; from then on the
pipeline only calls the protocol: the space and ranking go to the search, the hard mask to
:meth:`PruningMode.rewrite`, and :meth:`PruningMode.sparsity_summary` plus
:attr:`PruningMode.pattern` to the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from smart_onnx.errors import ConstraintError, InternalError
from smart_onnx.graph import Analysis
from smart_onnx.hw import Profile
from smart_onnx.model import OnnxModel
from smart_onnx.report import SparsitySummary
from smart_onnx.search import PruningSpace, Ranking, achieved_sparsity

__all__ = [
    "ModeBuilder", "ModeRequest", "PruningMode", "least_kept_per_group", "mode_builder", "ranked_sparsity",
    "register_mode", "registered_modes", "require_sparsity",
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
        sparsity: the sparsity the search aims for (N:M: the pattern's).
        checker_rules: the rules of :data:`smart_onnx.hw.RULES` the output is judged by.
    """

    name: str
    space: PruningSpace
    ranking: Ranking
    sparsity: float
    checker_rules: tuple[str, ...]

    def rewrite(self, model: OnnxModel, keep: torch.Tensor, *, sparse_format: str) -> OnnxModel:
        """The model (with trained weights) with the hard mask applied: blocks zeroed or channels removed."""
        ...

    def pattern(self) -> dict[str, Any]:
        """The report's ``block`` and ``nm`` entries (None where the mode has none)."""
        ...

    def sparsity_summary(self, keep: torch.Tensor, requested: float) -> SparsitySummary:
        """The report's ``sparsity``: requested, achieved in weights and MACs (and the budget kind)."""
        ...


# name -> the mode's builder: (request, analysis, model) -> PruningMode, and its request check.
_BUILDERS: dict[str, ModeBuilder] = {}


@dataclass(frozen=True)
class ModeBuilder:
    """How a registered mode is made.

    Attributes:
        check: refuses a request before any model work (e.g. a missing sparsity).
        build: makes the mode for one analysed model.
    """

    check: Callable[[ModeRequest], None]
    build: Callable[[ModeRequest, Analysis, OnnxModel], PruningMode]


def register_mode(
    name: str, build: Callable[[ModeRequest, Analysis, OnnxModel], PruningMode], *,
    check: Callable[[ModeRequest], None] | None = None,
) -> None:
    """Register a mode under ``name`` (at import of its module; registering a name twice is a bug).

    Args:
        name: what ``--mode`` and a profile's ``mode`` call it.
        build: makes the mode for one analysed model (usually the mode's class).
        check: refuses a request before any model work (e.g. a missing sparsity); None: nothing to refuse.
    """
    if name in _BUILDERS:
        raise InternalError(f"pruning mode {name!r} is registered twice")
    _BUILDERS[name] = ModeBuilder(check=check or (lambda request: None), build=build)


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


def ranked_sparsity(space: PruningSpace, keep: torch.Tensor, requested: float, budget: str) -> SparsitySummary:
    """The report's ``sparsity`` of a globally ranked mode: exact, in weights and MACs, and what the budget counted."""
    return SparsitySummary(requested, achieved_sparsity(space, keep, "params"), achieved_sparsity(space, keep, "macs"),
                           budget)
