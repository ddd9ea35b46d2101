"""How many search and fine-tune steps a run gets: from the data's size, the measured step time and a time budget.

A fixed 400 + 400 steps is 13 epochs of a thousand samples but 200 epochs of 64, and 47
minutes on a model whose step takes 3.5 s. So the wanted count follows the data (about
:data:`EPOCHS` passes, within [:data:`MIN_STEPS`, :data:`MAX_STEPS`] per phase), and the
time budget caps it: the steps are measured, and both phases shrink in proportion until
they fit the part of the budget left for training (:data:`TRAIN_SHARE`; the rest is for
statistics, refit, export and evaluation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["EPOCHS", "MAX_STEPS", "MIN_STEPS", "TRAIN_SHARE", "StepPlan", "plan_steps", "wanted_steps"]

EPOCHS = 12
MIN_STEPS = 100
MAX_STEPS = 400
TRAIN_SHARE = 0.8


@dataclass(frozen=True)
class StepPlan:
    """The step counts a run uses, and why (written into the report)."""

    steps: int
    finetune_steps: int
    step_seconds: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wanted_steps(samples: int, batch_size: int) -> int:
    """Steps per phase the data asks for: about :data:`EPOCHS` passes, within [:data:`MIN_STEPS`, :data:`MAX_STEPS`]."""
    per_epoch = max(1, samples // max(1, min(batch_size, samples)))
    return int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * per_epoch))))


def plan_steps(
    *, steps: int | None, finetune_steps: int | None, samples: int, batch_size: int,
    step_seconds: float | None, time_budget: float | None, elapsed: float = 0.0,
) -> StepPlan:
    """The step counts: the caller's where given, else from the data; then capped by the time budget.

    Args:
        steps, finetune_steps: the caller's counts (None: chosen here).
        samples: calibration samples trained on.
        batch_size: samples per step.
        step_seconds: measured wall time of one training step (None: not measured, no cap).
        time_budget: seconds for the whole run (None: no cap).
        elapsed: seconds of the budget already spent (analysis, statistics, the timing steps).
    """
    wanted = wanted_steps(samples, batch_size)
    search = wanted if steps is None else steps
    finetune = wanted if finetune_steps is None else finetune_steps
    chosen = "given" if steps is not None and finetune_steps is not None else (
        f"{EPOCHS} epochs of {samples} samples at batch {batch_size}, within [{MIN_STEPS}, {MAX_STEPS}] per phase")
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
    return StepPlan(capped_search, capped_finetune, step_seconds,
                    f"{chosen}: {search}+{finetune} steps wanted, {capped_search}+{capped_finetune} fit "
                    f"{TRAIN_SHARE:.0%} of the {time_budget:.0f} s budget at {step_seconds:.2f} s per step")
