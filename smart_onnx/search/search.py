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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from smart_onnx.data import Dataset
from smart_onnx.errors import ConstraintError
from smart_onnx.executor import Executor
from smart_onnx.graph import OutputInfo, infer_output_roles
from smart_onnx.graph import label_output as _label_output
from smart_onnx.search.loss import OutputScales, distillation_loss
from smart_onnx.search.schedule import ExponentialTemperature
from smart_onnx.search.soft_topk import hard_topk, hard_topk_grouped, soft_topk, soft_topk_grouped
from smart_onnx.search.space import NMSpace, PruningSpace
from smart_onnx.search.stats import activation_stats

__all__ = ["METHODS", "SearchConfig", "SearchResult", "StepInfo", "UnitConstraints", "achieved_sparsity", "run_search"]

log = logging.getLogger(__name__)

METHODS = ("smart", "magnitude", "uniform", "random")


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search; the defaults are what ``smart-onnx prune`` uses."""

    sparsity: float | None = 0.5  # None: not given (prune then takes the N:M pattern's, or refuses)
    budget: str = "params"  # or "macs"
    method: str = "smart"
    # Defaults from tools/sweep_defaults.py on the bundled Fashion-MNIST ResNet (docs/benchmarks.md).
    steps: int = 400
    finetune_steps: int = 400
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
        if self.steps < 0 or self.finetune_steps < 0 or self.batch_size < 1:
            raise ConstraintError("steps and fine-tune steps must be >= 0 and the batch size >= 1")


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

    stage: str  # "search" or "finetune"
    step: int
    total: int
    loss: float
    tau: float | None
    sparsity: float


@dataclass
class SearchResult:
    """The hard mask, the trained weights and the curves."""

    keep: torch.Tensor | list[torch.Tensor]
    weights: dict[str, np.ndarray]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


Progress = Callable[[StepInfo], None]


def _sampler(n: int, batch_size: int, seed: int):
    """Endless shuffled index batches (a new permutation per epoch)."""
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, n)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


# The dense outputs of the whole calibration set are kept up to this size; above it a frozen
# copy of the dense model recomputes them per batch (one more forward pass per step), so
# memory does not grow with the number of samples.
TEACHER_CACHE_BYTES = 256 * 2**20


class _Teacher:
    """The dense model's outputs per batch, and the regression outputs' variances over the calibration set."""

    def __init__(self, executor: Executor, data: Dataset, config: SearchConfig,
                 outputs: Sequence[OutputInfo], to_device: Callable[[Mapping[str, np.ndarray]], dict]) -> None:
        self.batch_axis = {o.name: o.batch_axis for o in outputs}
        self.to_device = to_device
        scales = OutputScales(outputs)
        parts: dict[str, list[torch.Tensor]] | None = {}
        seen = nbytes = 0
        with torch.no_grad():  # one streamed pass: statistics always, outputs while they fit the budget
            for batch in data.batches(max(config.batch_size, 64)):
                out = {k: v for k, v in executor(to_device(batch.inputs)).items() if v.is_floating_point()}
                scales.update(out)
                seen += len(next(iter(batch.inputs.values())))
                if parts is None:
                    continue
                nbytes += sum(v.numel() * v.element_size() for v in out.values())
                if nbytes * len(data) / seen > TEACHER_CACHE_BYTES:
                    parts = None
                    continue
                for name, v in out.items():
                    parts.setdefault(name, []).append(v.cpu())
        self.variances = scales.variances()
        self.cached = None if parts is None else {
            k: torch.cat(v, dim=self.batch_axis.get(k, 0)) for k, v in parts.items()}
        self.model: Executor | None = None
        if self.cached is None:
            log.info("dense outputs exceed %d MiB: recomputed per batch", TEACHER_CACHE_BYTES // 2**20)
            self.model = Executor(executor.model).to(config.device)
            for p in self.model.parameters():
                p.requires_grad_(False)

    def __call__(self, idx: np.ndarray, feeds: Mapping[str, torch.Tensor], device: torch.device) -> dict:
        if self.cached is None:
            with torch.no_grad():
                return {k: v for k, v in self.model(feeds).items() if v.is_floating_point()}
        index = torch.as_tensor(idx)
        return {k: v.index_select(self.batch_axis.get(k, 0), index).to(device) for k, v in self.cached.items()}


class _Trainer:
    """Shared by search and fine-tune: batches, the dense teacher's outputs, the loss of one batch."""

    def __init__(self, executor: Executor, data: Dataset, config: SearchConfig,
                 outputs: Sequence[OutputInfo], label_output: str | None) -> None:
        self.executor = executor
        self.data = data
        self.config = config
        self.device = torch.device(config.device)
        self.outputs = list(outputs)
        self.label_output = label_output
        self.labels = None
        if data.labels is not None and label_output is not None:
            self.labels = torch.as_tensor(data.labels, dtype=torch.long)
        self.teacher = _Teacher(executor, data, config, self.outputs, self._to_device)
        self.batches = _sampler(len(data), config.batch_size, config.seed)
        # Scalars (epsilons, GELU's 0.5, attention scales) are constants in spirit: never trained.
        self.weight_params = [p for p in executor.weights.parameters() if p.numel() > 1]

    def _to_device(self, arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for k, a in arrays.items()}

    def loss(self, transforms: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
        idx = next(self.batches)
        feeds = self._to_device({k: a[idx] for k, a in self.data.arrays.items()})
        student = self.executor(feeds, transforms=transforms)
        teacher = self.teacher(idx, feeds, self.device)
        labels = None if self.labels is None else self.labels[idx].to(self.device)
        return distillation_loss(student, teacher, self.outputs, variances=self.teacher.variances, labels=labels,
                                 label_output=self.label_output, label_weight=self.config.label_weight,
                                 temperature=self.config.distill_temperature)


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
    torch.manual_seed(config.seed)
    executor.to(config.device)
    outputs = infer_output_roles(executor.model) if outputs is None else outputs
    label_output = label_output or _label_output(outputs, None, data.labels is not None)
    trainer = _Trainer(executor, data, config, outputs, label_output)
    result = SearchResult(keep=torch.zeros(0), weights={}, history={"loss": [], "tau": [], "sparsity": [],
                                                                      "finetune_loss": []})
    start = time.perf_counter()
    stats = activation_stats(executor, data, config, space.scored_layers) if config.method == "smart" else None
    result.seconds["statistics"] = time.perf_counter() - start

    start = time.perf_counter()
    if isinstance(space, NMSpace):
        keep = _search_nm(space, trainer, stats, config, result, progress)
    else:
        keep = _search_units(space, trainer, stats, config, constraints or UnitConstraints(), result, progress)
    result.keep = keep
    result.seconds["search"] = time.perf_counter() - start

    start = time.perf_counter()
    device = trainer.device
    hard = [k.to(device, torch.float32) for k in keep] if isinstance(keep, list) else keep.to(device, torch.float32)
    transforms = space.transforms(hard)
    steps = config.finetune_steps + (config.steps if config.method != "smart" else 0)
    optimizer = torch.optim.Adam(trainer.weight_params, lr=config.lr)
    for step in range(steps):
        loss = trainer.loss(transforms)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss = loss.detach()
        result.history["finetune_loss"].append(float(loss))
        if progress:
            progress(StepInfo("finetune", step + 1, steps, float(loss), None, config.sparsity))
    result.seconds["finetune"] = time.perf_counter() - start
    for p in executor.parameters():  # gradients are a full copy of the weights: not needed for export
        p.grad = None
    result.weights = executor.weights.to_arrays(executor.weights.parameter_names())
    return result


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
    trainer: _Trainer, scores: list[torch.nn.Parameter], soft_mask: Callable[[float], Any],
    space: PruningSpace | NMSpace, sparsity_of: Callable[[Any], float], config: SearchConfig,
    result: SearchResult, progress: Progress | None,
) -> None:
    """SMART's structural search: weights and scores trained jointly while tau decays."""
    schedule = ExponentialTemperature(config.tau_start, config.tau_end, config.steps)
    opt_w = torch.optim.Adam(trainer.weight_params, lr=config.lr)
    opt_m = torch.optim.Adam(scores, lr=config.score_lr)
    for step in range(config.steps):
        tau = schedule(step)
        mask = soft_mask(tau)
        loss = trainer.loss(space.transforms(mask))
        opt_w.zero_grad(set_to_none=True)
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        opt_m.step()
        value, sparsity = float(loss.detach()), sparsity_of(mask)
        result.history["loss"].append(value)
        result.history["tau"].append(tau)
        result.history["sparsity"].append(sparsity)
        if progress:
            progress(StepInfo("search", step + 1, config.steps, value, tau, sparsity))


def _search_units(
    space: PruningSpace, trainer: _Trainer, stats, config: SearchConfig, constraints: UnitConstraints,
    result: SearchResult, progress: Progress | None,
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
        lambda p: 1.0 - float((costs_dev * (p.detach() > 0.5)).sum()) / total, config, result, progress,
    )
    return _harden_to_target(space, scores.detach().cpu(), costs, config, constraints)[0]


def _search_nm(
    space: NMSpace, trainer: _Trainer, stats, config: SearchConfig, result: SearchResult,
    progress: Progress | None,
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
        lambda _: space.sparsity, config, result, progress,
    )
    return [hard_topk_grouped(s.detach().cpu(), space.n) for s in scores]
