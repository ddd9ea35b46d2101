"""How many search and fine-tune steps a run gets: from the data's size, the measured step time and a time budget.

A fixed 400 + 400 steps is 13 epochs of a thousand samples but 200 epochs of 64, and 47
minutes on a model whose step takes 3.5 s. So the wanted count follows the data (about
:data:`EPOCHS` passes, within [:data:`MIN_STEPS`, :data:`MAX_STEPS`] per phase), and the
time budget caps it: the steps are measured, and both phases shrink in proportion until
they fit the part of the budget left for training (:data:`TRAIN_SHARE`; the rest is for
statistics, refit, export and evaluation).

Augmented calibration data (a few dozen samples, see data/augment.py) is new data at every
pass, so such a run asks for :data:`MAX_STEPS` per phase and the time budget decides how many
it gets: a count from the passes alone gave 60 sentences 100 + 100 steps in 105 s of a 600 s
budget, and MiniLM at 45 % channels went from a held-out cosine of 0.967 there to 0.976 at
400 + 400 (docs/benchmarks.md). Only the data's own count decides whether the batch shrinks
(and how far search.py lets the fine-tune of a plan the budget cut run on).

Where the batch is not given and the wanted steps at :data:`DEFAULT_BATCH` do not fit, the
batch shrinks instead (:func:`smaller_batch`): the same samples in more, smaller steps, as
many as fit. A few updates of a large batch leave the search's temperature schedule and the
fine-tune short of steps, and on a CPU a step's time grows faster than its batch
(EfficientNet-Lite0, one thread: 7.5 s a step at batch 32, 1.2 s at 8).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DEFAULT_BATCH", "EPOCHS", "MAX_STEPS", "MIN_BATCH", "MIN_STEPS", "TRAIN_SHARE", "StepPlan", "plan_steps",
           "smaller_batch", "wanted_steps"]

EPOCHS = 12
MIN_STEPS = 100
MAX_STEPS = 400
TRAIN_SHARE = 0.8
DEFAULT_BATCH = 32
MIN_BATCH = 4


@dataclass(frozen=True)
class StepPlan:
    """The step counts a run uses, and why (written into the report)."""

    steps: int
    finetune_steps: int
    step_seconds: float | None
    reason: str
    # The steps per phase asked for where the time budget cut them (None: the plan fits, or no budget).
    asked: tuple[int, int] | None = None
    # The torch threads the run trains with where they were chosen by timing (search/threads.py); None: the caller's
    # count or torch's, untimed.
    threads: int | None = None
    # The steps wanted before the time budget cut them, which a smaller batch may fit (None: not cut, or cut only
    # in the steps augmented data asks for beyond its own count); not written into the report.
    wanted: tuple[int, int] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.asked is not None:  # a JSON list, read back
            object.__setattr__(self, "asked", (int(self.asked[0]), int(self.asked[1])))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["wanted"]
        if out["asked"] is None:  # as reports written before the field
            del out["asked"]
        else:
            out["asked"] = list(out["asked"])
        if out["threads"] is None:
            del out["threads"]
        return out


def wanted_steps(samples: int, batch_size: int, augmented: bool = False) -> int:
    """Steps per phase the data asks for: about :data:`EPOCHS` passes, within [:data:`MIN_STEPS`, :data:`MAX_STEPS`];
    :data:`MAX_STEPS` for ``augmented`` data, which every pass sees anew."""
    if augmented:
        return MAX_STEPS
    per_epoch = max(1, samples // max(1, min(batch_size, samples)))
    return int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * per_epoch))))


def smaller_batch(plan: StepPlan, batch_size: int, samples: int) -> int | None:
    """The batch to train a capped ``plan`` at instead of ``batch_size``: the largest power of two at which its
    wanted steps would fit were a step's time proportional to its batch, at least :data:`MIN_BATCH`; None
    where the plan was not capped or the batch cannot shrink."""
    if plan.wanted is None or plan.step_seconds is None:
        return None
    wanted = plan.wanted[0] + plan.wanted[1]
    fits = plan.steps + plan.finetune_steps
    if fits >= wanted:
        return None
    batch = max(MIN_BATCH, 2 ** int(math.log2(max(1.0, min(batch_size, samples) * fits / wanted))))
    return batch if batch < min(batch_size, samples) else None


def plan_steps(
    *, steps: int | None, finetune_steps: int | None, samples: int, batch_size: int,
    step_seconds: float | None, time_budget: float | None, elapsed: float = 0.0,
    wanted: tuple[int, int] | None = None, augmented: bool = False,
) -> StepPlan:
    """The step counts: the caller's where given, else from the data; then capped by the time budget.

    Args:
        steps, finetune_steps: the caller's counts (None: chosen here).
        samples: calibration samples trained on.
        batch_size: samples per step.
        step_seconds: measured wall time of one training step (None: not measured, no cap).
        time_budget: seconds for the whole run (None: no cap).
        elapsed: seconds of the budget already spent (analysis, statistics, the timing steps).
        wanted: the steps per phase to ask for where the caller's are None, and why, over the data's count
            (a re-plan at a smaller batch asks for as many samples as the first plan did).
        augmented: training augments the data: where the caller's counts are None, ask for
            :data:`MAX_STEPS` per phase; a cap that leaves the data's own count whole shrinks no batch.
    """
    per_phase = wanted_steps(samples, batch_size)
    extend = augmented and wanted is None
    asked = wanted_steps(samples, batch_size, augmented) if extend else per_phase
    search = (wanted[0] if wanted else asked) if steps is None else steps
    finetune = (wanted[1] if wanted else asked) if finetune_steps is None else finetune_steps
    chosen = "given" if steps is not None and finetune_steps is not None else (
        f"{MAX_STEPS} per phase for augmented data (each pass sees new views)" if extend else
        f"{EPOCHS} epochs of {samples} samples at batch {batch_size}, within [{MIN_STEPS}, {MAX_STEPS}] per phase"
        if wanted is None else f"the samples of the plan at batch {DEFAULT_BATCH} in batches of {batch_size}")
    if time_budget is None or step_seconds is None or step_seconds <= 0 or search + finetune == 0:
        return StepPlan(search, finetune, step_seconds, chosen)
    available = max(0.0, TRAIN_SHARE * time_budget - elapsed)
    fits = int(available / step_seconds)
    if fits >= search + finetune:
        return StepPlan(search, finetune, step_seconds, f"{chosen}; {search + finetune} steps of "
                                                        f"{step_seconds:.2f} s fit the {time_budget:.0f} s budget")
    scale = fits / (search + finetune)
    capped_search = max(1 if search else 0, int(search * scale))
    capped_finetune = max(0, min(int(finetune * scale), fits - capped_search))
    cut = (search, finetune)
    if extend:  # a smaller batch is for the data's own count; the augmented ask beyond it only takes what fits
        own = (per_phase if steps is None else search, per_phase if finetune_steps is None else finetune)
        cut = own if fits < sum(own) else None
    return StepPlan(capped_search, capped_finetune, step_seconds,
                    f"{chosen}: {search}+{finetune} steps wanted, {capped_search}+{capped_finetune} fit "
                    f"{TRAIN_SHARE:.0%} of the {time_budget:.0f} s budget at {step_seconds:.2f} s per step",
                    asked=(search, finetune), wanted=cut)
