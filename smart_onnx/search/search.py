"""The SMART search and its baselines: scores -> hard mask -> fine-tuned weights.

SMART (``method="smart"``), following DESIGN.md:

1. structural search: weights and unit scores trained jointly (two Adam optimizers)
   through the soft top-k mask ``p = sigmoid(m / tau + t)`` with ``sum(c p) = K``, while
   tau decays exponentially;
2. harden: the exact top-K of the scores under the costs (and the caller's constraints);
3. fine-tune: weights trained with the hard mask fixed.

Baselines (``magnitude``, ``uniform``, ``random``) take their hard mask from fixed scores
and fine-tune for ``steps + finetune_steps``, the same number of weight updates.
Training is distillation to the dense model's outputs (plus cross-entropy with labels).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from smart_onnx.data import Dataset
from smart_onnx.data.augment import AUGMENT_BELOW, ImageAugmenter
from smart_onnx.errors import ConstraintError
from smart_onnx.executor import Executor
from smart_onnx.executor.module import Transforms
from smart_onnx.graph import OutputInfo, infer_output_roles
from smart_onnx.graph import label_output as _label_output
from smart_onnx.graph.features import feature_points
from smart_onnx.search.budget import TRAIN_SHARE, StepPlan, plan_steps
from smart_onnx.search.refit import refit_layers
from smart_onnx.search.schedule import ExponentialTemperature
from smart_onnx.search.soft_topk import hard_topk, hard_topk_grouped, soft_topk, soft_topk_grouped
from smart_onnx.search.space import NMSpace, PruningSpace
from smart_onnx.search.stats import activation_stats
from smart_onnx.search.trainer import Trainer

__all__ = ["METHODS", "SearchConfig", "SearchResult", "StepInfo", "UnitConstraints", "achieved_sparsity", "run_search"]

log = logging.getLogger(__name__)

# Search steps after which the step time is measured again and the search re-planned to fit its deadline.
REPLAN_AFTER = 5
# The fewest samples a validation split (and what remains to train on) may have; below, no early stopping.
MIN_VALIDATION = 8

METHODS = ("smart", "magnitude", "uniform", "random")


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search; the defaults are what ``smart-onnx prune`` uses."""

    sparsity: float | None = 0.5  # None: not given (prune then takes the N:M pattern's, or refuses)
    budget: str = "params"  # or "macs"
    method: str = "smart"
    # None: chosen from the data's size and capped by time_budget (see search/budget.py).
    steps: int | None = None
    finetune_steps: int | None = None
    batch_size: int = 32
    lr: float = 3e-4
    score_lr: float = 0.05
    tau_start: float = 1.0
    tau_end: float = 0.01
    label_weight: float = 1.0
    distill_temperature: float = 4.0  # see distillation_loss
    stats_batches: int = 4
    score_layer_norm: float = 0.5  # see PruningSpace.initial_scores
    seed: int = 0
    device: str = "cpu"
    time_budget: float | None = 600.0  # seconds for the whole search; None: no cap
    feature_weight: float = 1.0  # internal-feature distillation (0: outputs only); see Trainer
    feature_points: int = 8
    augment: bool | None = None  # None: on for image inputs below data.augment.AUGMENT_BELOW samples
    validation: float = 0.1  # calibration fraction held out for early stopping of the fine-tune (0: none)
    refit: bool = True  # closed-form ridge refit of the kept weights after hardening (search/refit.py)
    refit_ridge: float = 0.01
    refit_samples: int = 256
    patience: int = 5  # held-out checks without improvement before the fine-tune stops

    def __post_init__(self) -> None:
        # Checked here, so a bad option fails before any model is loaded.
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ConstraintError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        for name in ("lr", "score_lr", "tau_start", "tau_end", "distill_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConstraintError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        if self.tau_end > self.tau_start:
            raise ConstraintError(f"the temperature must decay: tau-end {self.tau_end} > tau-start {self.tau_start}")
        if self.method not in METHODS:
            raise ConstraintError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        if self.budget not in ("params", "macs"):
            raise ConstraintError(f"unknown budget {self.budget!r}; choose params or macs")
        if (self.steps or 0) < 0 or (self.finetune_steps or 0) < 0 or self.batch_size < 1:
            raise ConstraintError("steps and fine-tune steps must be >= 0 and the batch size >= 1")
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget > 0):
            raise ConstraintError(f"the time budget must be a positive number of seconds, got {self.time_budget}")
        if not 0.0 <= self.validation < 1.0 or self.feature_weight < 0 or self.feature_points < 0:
            raise ConstraintError("the validation fraction must be in [0, 1), feature weight and points >= 0")


@dataclass(frozen=True)
class UnitConstraints:
    """What the hard mask must respect.

    Attributes:
        keep: units that must be kept (e.g. layers the target runs dense).
        group_min_keep: per group (``space.unit_group``) the least cost that must stay.
        adjust: applied to every hard mask with the scores it came from, e.g. rounding each
            group's kept channel count to the target's alignment; the sparsity search
            sees the adjusted masks, so the budget is met after adjustment.
    """

    keep: torch.Tensor | None = None
    group_min_keep: torch.Tensor | None = None
    adjust: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class StepInfo:
    """Progress of one optimisation step (for progress bars)."""

    stage: str  # "search", "refit" or "finetune"
    step: int
    total: int
    loss: float | None  # None where a stage has no loss (refit)
    tau: float | None
    sparsity: float


@dataclass
class SearchResult:
    """The hard mask, the trained weights and the curves."""

    keep: torch.Tensor | list[torch.Tensor]
    weights: dict[str, np.ndarray]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    plan: StepPlan | None = None
    training: dict[str, Any] = field(default_factory=dict)  # features, augmentation, early stop: for the report


Progress = Callable[[StepInfo], None]


def run_search(
    executor: Executor,
    space: PruningSpace | NMSpace,
    data: Dataset,
    config: SearchConfig,
    *,
    constraints: UnitConstraints | None = None,
    progress: Progress | None = None,
    outputs: Sequence[OutputInfo] | None = None,
    label_output: str | None = None,
) -> SearchResult:
    """Search a hard mask over ``space`` on ``data`` and fine-tune the weights under it.

    Args:
        executor: the model to prune; its weights are trained in place.
        space: the units (block, channel or N:M).
        data: calibration data (labels optional).
        config: sparsity, budget kind, method, steps, learning rates, seed, device.
        constraints: forced keeps and per-group minimums for the hard mask.
        progress: called after every optimisation step.
        outputs: the roles of the model's outputs (None: inferred from the graph).
        label_output: the class output the data's labels belong to (None: the single class
            output when the data has labels).

    Returns:
        The hard mask (``keep``), the fine-tuned weights by ONNX name, loss/tau/sparsity curves.

    Raises:
        ConstraintError: the constraints cannot be met within the budget (bad settings are
            refused when the SearchConfig is built).
        DataError: the data has labels and several class outputs could take them.
    """
    begin = time.perf_counter()
    torch.manual_seed(config.seed)
    executor.to(config.device)
    outputs = infer_output_roles(executor.model) if outputs is None else outputs
    label_output = label_output or _label_output(outputs, None, data.labels is not None)
    trainer = _trainer(executor, space, data, config, outputs, label_output)
    result = SearchResult(keep=torch.zeros(0), weights={}, history={"loss": [], "tau": [], "sparsity": [],
                                                                      "finetune_loss": [], "validation_loss": []})
    result.training = {"features": trainer.features, "feature_weight": config.feature_weight,
                       "augment": trainer.augmenter is not None, "calibration_samples": len(trainer.data),
                       "validation_samples": 0 if trainer.validation is None else len(trainer.validation)}
    start = time.perf_counter()
    stats = activation_stats(executor, data, config, space.scored_layers) if config.method == "smart" else None
    result.seconds["statistics"] = time.perf_counter() - start

    result.plan = _plan(trainer, config, begin)
    config = replace(config, steps=result.plan.steps, finetune_steps=result.plan.finetune_steps)
    deadline = search_deadline = None
    start = time.perf_counter()
    if config.time_budget is not None:  # each phase gets its share of what is left, so a slow search cannot eat both
        deadline = begin + config.time_budget * TRAIN_SHARE
        search_share = config.steps / max(1, config.steps + config.finetune_steps) if config.method == "smart" else 0.0
        search_deadline = start + max(0.0, deadline - start) * search_share
    if isinstance(space, NMSpace):
        keep = _search_nm(space, trainer, stats, config, result, progress, search_deadline)
    else:
        keep = _search_units(space, trainer, stats, config, constraints or UnitConstraints(), result, progress,
                             search_deadline)
    result.keep = keep
    result.seconds["search"] = time.perf_counter() - start

    device = trainer.device
    hard = [k.to(device, torch.float32) for k in keep] if isinstance(keep, list) else keep.to(device, torch.float32)
    transforms = space.transforms(hard)
    if config.refit:
        start = time.perf_counter()
        result.training["refit"] = _refit(trainer, space, transforms, config, progress, deadline)
        result.seconds["refit"] = time.perf_counter() - start
    start = time.perf_counter()
    steps = config.finetune_steps + (config.steps if config.method != "smart" else 0)
    result.training["stopped"] = _finetune(trainer, transforms, steps, config, result, progress, deadline)
    result.seconds["finetune"] = time.perf_counter() - start
    for p in executor.parameters():  # gradients are a full copy of the weights: not needed for export
        p.grad = None
    result.weights = executor.weights.to_arrays(executor.weights.parameter_names())
    return result


class _OutOfTime(Exception):
    """Raised from the refit's progress callback to end it at the time budget."""


def _refit(trainer: Trainer, space: PruningSpace | NMSpace, transforms: Transforms, config: SearchConfig,
           progress: Progress | None, deadline: float | None) -> dict[str, Any]:
    """The kept weights re-fitted layer by layer to the dense layers' outputs (see search/refit.py).

    At the time budget it ends after the pass in progress: every layer refitted so far keeps its
    new weights (each is refitted only where that lowers its error), the rest keep theirs.
    """
    passes = [0, 0]

    def report(done: int, total: int) -> None:
        passes[:] = [done, total]
        if progress:
            progress(StepInfo("refit", done, total, None, None, config.sparsity))
        if deadline is not None and time.perf_counter() > deadline and done < total:
            raise _OutOfTime

    try:
        refit = refit_layers(trainer.executor, trainer.teacher.dense_executor(), space.scored_layers, transforms,
                             trainer.data, batch_size=config.batch_size, max_samples=config.refit_samples,
                             ridge=config.refit_ridge, device=config.device, progress=report)
    except _OutOfTime:
        return {"stopped": f"time budget reached after {passes[0]} of {passes[1]} layers"}
    done = [lay for lay in refit.layers if lay.skipped is None]
    return {
        "layers": len(done), "skipped": {lay.name: lay.skipped for lay in refit.layers if lay.skipped},
        "mean_error_before": float(np.mean([lay.error_before for lay in done])) if done else None,
        "mean_error_after": float(np.mean([lay.error_after for lay in done])) if done else None,
        "passes": refit.passes,
    }


def _trainer(executor: Executor, space: PruningSpace | NMSpace, data: Dataset, config: SearchConfig,
             outputs: Sequence[OutputInfo], label_output: str | None) -> Trainer:
    """The trainer with this run's features, augmentation and validation split."""
    train, validation = data, None
    held = round(len(data) * config.validation)
    if config.validation > 0 and held >= MIN_VALIDATION and len(data) - held >= MIN_VALIDATION:
        train, validation = data.split(config.validation, seed=config.seed)
    augment = config.augment if config.augment is not None else len(train) < AUGMENT_BELOW
    layers = [lay.name for lay in space.scored_layers]
    features = feature_points(executor.model, layers, config.feature_points) if config.feature_weight > 0 else []
    return Trainer(executor, train, batch_size=config.batch_size, seed=config.seed, device=config.device,
                   label_weight=config.label_weight, temperature=config.distill_temperature, outputs=outputs,
                   label_output=label_output, features=features, feature_weight=config.feature_weight,
                   augmenter=ImageAugmenter(executor.model.inputs, config.seed) if augment else None,
                   validation=validation)


def _plan(trainer: Trainer, config: SearchConfig, begin: float) -> StepPlan:
    """Step counts from the data and, under a time budget, from two timed steps (one untimed first)."""
    step_seconds = None
    if config.time_budget is not None:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            trainer.loss({}).backward()
            times.append(time.perf_counter() - start)
        for p in trainer.weight_params:
            p.grad = None
        step_seconds = sum(times[1:]) / 2
    return plan_steps(steps=config.steps, finetune_steps=config.finetune_steps, samples=len(trainer.data),
                      batch_size=config.batch_size, step_seconds=step_seconds, time_budget=config.time_budget,
                      elapsed=time.perf_counter() - begin)


def _finetune(trainer: Trainer, transforms: Transforms, steps: int, config: SearchConfig, result: SearchResult,
              progress: Progress | None, deadline: float | None) -> str | None:
    """Weights trained under the fixed hard mask; stops early when the held-out loss stops improving.

    Returns:
        Why it stopped before ``steps`` (None: it ran them all).
    """
    optimizer = torch.optim.Adam(trainer.weight_params, lr=config.lr)
    check_every = max(10, steps // 20)
    best, best_state, since_best = math.inf, None, 0
    stopped = None
    start = trainer.validation_loss(transforms) if steps else None
    if start is not None:  # the weights as hardened and refitted are a candidate too: a fine-tune may only hurt
        result.history["validation_loss"].append(start)
        best, best_state = start, [p.detach().clone() for p in trainer.weight_params]
    for step in range(steps):
        loss = trainer.loss(transforms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        result.history["finetune_loss"].append(value)
        if progress:
            progress(StepInfo("finetune", step + 1, steps, value, None, config.sparsity))
        if deadline is not None and time.perf_counter() > deadline:
            stopped = f"time budget reached after {step + 1} of {steps} fine-tune steps"
            break
        if (step + 1) % check_every and step + 1 != steps:
            continue
        held = trainer.validation_loss(transforms)
        if held is None:
            continue
        result.history["validation_loss"].append(held)
        if held < best:
            best, since_best = held, 0
            best_state = [p.detach().clone() for p in trainer.weight_params]
        else:
            since_best += 1
            if since_best >= config.patience:
                stopped = f"held-out loss did not improve for {since_best * check_every} steps (stopped at {step + 1})"
                break
    if best_state is not None:  # the weights of the best held-out check, not the last step's
        with torch.no_grad():
            for p, saved in zip(trainer.weight_params, best_state):
                p.copy_(saved)
    return stopped


def _fixed_scores(space: PruningSpace, executor: Executor, config: SearchConfig) -> torch.Tensor:
    weights = dict(executor.weights.named_weights())
    if config.method == "random":
        return torch.rand(space.num_units, generator=torch.Generator().manual_seed(config.seed))
    return space.magnitude_scores(weights)


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


def achieved_sparsity(space: PruningSpace, keep: torch.Tensor, budget: str) -> float:
    """Exact fraction of the prunable weights (or MACs) a hard mask removes."""
    kept, total = space.kept(keep), space.totals()
    i = 1 if budget == "macs" else 0
    return 1.0 - kept[i] / total[i] if total[i] > 0 else 0.0


def _harden_to_target(
    space: PruningSpace, scores: torch.Tensor, costs: torch.Tensor, config: SearchConfig,
    constraints: UnitConstraints, method: str | None = None,
) -> tuple[torch.Tensor, float]:
    """The hard mask, and the keep fraction of unit cost, that removes at least the requested sparsity.

    Unit costs can overlap (channel mode), so the keep fraction that meets the target is
    found by bisection on the exact achieved sparsity; the result removes the requested
    fraction or slightly more (by less than one unit's cost, up to the overlap).
    """
    method = method or config.method
    lo, hi = 0.0, 1.0  # keep fractions: lo meets the target, hi does not (or is the dense end)
    best: torch.Tensor | None = None
    best_frac = 0.0
    dense = _harden(space, scores, costs, 1.0, method, constraints)
    if achieved_sparsity(space, dense, config.budget) >= config.sparsity - 1e-12:
        return dense, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        try:
            keep = _harden(space, scores, costs, mid, method, constraints)
        except ConstraintError:  # constraints need more than this budget: move towards dense
            lo = mid
            continue
        if achieved_sparsity(space, keep, config.budget) >= config.sparsity - 1e-12:
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
            f"{config.sparsity:.1%}; lower --sparsity or relax the profile"
        )
    return best, best_frac


def _joint_search(
    trainer: Trainer, scores: list[torch.nn.Parameter], soft_mask: Callable[[float], Any],
    space: PruningSpace | NMSpace, sparsity_of: Callable[[Any], float], config: SearchConfig,
    result: SearchResult, progress: Progress | None, deadline: float | None,
) -> None:
    """SMART's structural search: weights and scores trained jointly while tau decays.

    Internal features are distilled here too, unless the space's masks zero whole activation
    channels (channel mode): a soft-masked channel would be pulled back towards the dense
    feature, a pressure against pruning it that the outputs do not ask for.
    """
    use_features = not space.masks_activations
    schedule = ExponentialTemperature(config.tau_start, config.tau_end, config.steps)
    opt_w = torch.optim.Adam(trainer.weight_params, lr=config.lr)
    opt_m = torch.optim.Adam(scores, lr=config.score_lr)
    total, offset, started = config.steps, 0, time.perf_counter()
    step = 0
    while step < total:
        tau = schedule(step - offset)
        mask = soft_mask(tau)
        loss = trainer.loss(space.transforms(mask), use_features=use_features)
        opt_w.zero_grad(set_to_none=True)
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_m.step()
        value, sparsity = float(loss.detach()), sparsity_of(mask)
        result.history["loss"].append(value)
        result.history["tau"].append(tau)
        result.history["sparsity"].append(sparsity)
        step += 1
        if progress:
            progress(StepInfo("search", step, total, value, tau, sparsity))
        if deadline is None:
            continue
        now = time.perf_counter()
        if step == REPLAN_AFTER and step < total:
            # The timed steps before the search can miss what a real step costs (masks, optimisers,
            # a busy machine): re-plan on the steps just run, with tau decaying over what is left.
            fits = int((deadline - now) / ((now - started) / step))
            if step + fits < total:
                result.training["search_replanned"] = f"{total} -> {step + fits} steps after {step} timed steps"
                schedule = ExponentialTemperature(tau, config.tau_end, max(1, fits))
                total, offset = step + fits, step
        elif now > deadline:
            result.training["search_stopped"] = f"time budget reached after {step} of {total} search steps"
            break


def _search_units(
    space: PruningSpace, trainer: Trainer, stats, config: SearchConfig, constraints: UnitConstraints,
    result: SearchResult, progress: Progress | None, deadline: float | None,
) -> torch.Tensor:
    executor = trainer.executor
    costs = space.costs(config.budget)
    total = float(costs.sum())
    if space.num_units == 0 or total <= 0:
        raise ConstraintError("the model has no prunable units in this mode (every layer or group is frozen or dense)")
    if config.method != "smart":
        return _harden_to_target(space, _fixed_scores(space, executor, config), costs, config, constraints)[0]

    weights = dict(executor.weights.named_weights())
    initial = space.initial_scores(weights, stats, config.score_layer_norm)
    # The soft budget that, hardened on the initial scores, removes the requested sparsity.
    budget = _harden_to_target(space, initial, costs, config, constraints, method="smart")[1] * total
    scores = torch.nn.Parameter(initial.to(trainer.device))
    costs_dev = costs.to(trainer.device)
    _joint_search(
        trainer, [scores], lambda tau: soft_topk(scores, costs_dev, budget, tau), space,
        lambda p: 1.0 - float((costs_dev * (p.detach() > 0.5)).sum()) / total, config, result, progress, deadline,
    )
    return _harden_to_target(space, scores.detach().cpu(), costs, config, constraints)[0]


def _search_nm(
    space: NMSpace, trainer: Trainer, stats, config: SearchConfig, result: SearchResult,
    progress: Progress | None, deadline: float | None,
) -> list[torch.Tensor]:
    executor = trainer.executor
    if not space.layers:
        raise ConstraintError(f"no layer has an input axis of at least M={space.m} weights for N:M pruning")
    weights = dict(executor.weights.named_weights())
    if config.method == "random":
        gen = torch.Generator().manual_seed(config.seed)
        return [hard_topk_grouped(torch.rand(s.shape, generator=gen), space.n)
                for s in space.magnitude_scores(weights)]
    if config.method != "smart":  # magnitude and uniform coincide: N of every M by |w|
        return [hard_topk_grouped(s, space.n) for s in space.magnitude_scores(weights)]
    scores = [torch.nn.Parameter(s.to(trainer.device)) for s in space.initial_scores(weights, stats)]
    _joint_search(
        trainer, scores, lambda tau: [soft_topk_grouped(s, space.n, tau) for s in scores], space,
        lambda _: space.sparsity, config, result, progress, deadline,
    )
    return [hard_topk_grouped(s.detach().cpu(), space.n) for s in scores]
