"""What one search is asked to do: its settings (:class:`SearchConfig`) and the hard mask's constraints."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.search.precision import PRECISIONS

__all__ = ["BUDGETS", "METHODS", "SearchConfig", "UnitConstraints"]

METHODS = ("smart", "magnitude", "uniform", "random")
BUDGETS = ("params", "macs")  # what a sparsity counts: weights, or multiply-accumulates


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of one search; the defaults are what ``smart-onnx prune`` uses."""

    # None: not given, as the CLI's --sparsity; the N:M pattern fixes its own, block and channel mode refuse it.
    sparsity: float | None = None
    budget: str = "params"  # or "macs"
    method: str = "smart"
    # None: chosen from the data's size and capped by time_budget (see search/budget.py).
    steps: int | None = None
    finetune_steps: int | None = None
    # None: search.budget.DEFAULT_BATCH, smaller where the time budget cannot fit the steps wanted at it.
    batch_size: int | None = None
    lr: float = 3e-3  # relative: a step moves each weight tensor by about lr times its RMS (search.phases)
    score_lr: float = 0.05
    tau_start: float = 1.0
    tau_end: float = 0.01
    label_weight: float = 1.0
    distill_temperature: float = 4.0  # see distillation_loss
    stats_batches: int = 4
    score_layer_norm: float = 0.5  # see PruningSpace.initial_scores
    seed: int = 0
    device: str = "cpu"
    # CPU threads of torch for the search; None: torch's count, or fewer where timed steps are faster with fewer
    # (a busy machine; search/threads.py), in one CPU process under a time budget.
    threads: int | None = None
    time_budget: float | None = 600.0  # seconds for the whole search; None: no cap
    feature_weight: float = 1.0  # internal-feature distillation (0: outputs only); see Trainer
    feature_points: int = 8
    augment: bool | None = None  # None: on for image inputs below data.augment.AUGMENT_BELOW samples
    validation: float = 0.1  # calibration fraction held out for early stopping of the fine-tune (0: none)
    refit: bool = True  # closed-form ridge refit of the kept weights after hardening (search/refit.py)
    refit_ridge: float = 0.01
    # SMART in block mode: the refit may re-choose which blocks each block row keeps, as many (search/refit.py).
    refit_reselect: bool = True
    # The calibration samples the refit fits, at most; where training augments images, views of them fill it to this.
    refit_samples: int = 256
    patience: int = 5  # held-out checks without improvement before the fine-tune stops
    workers: int = 0  # DataLoader processes reading training batches ahead (search/loader.py); 0: none
    precision: str = "auto"  # "auto": autocast on CUDA (bf16, else fp16 + GradScaler); "fp32" (search/precision.py)

    def __post_init__(self) -> None:
        # Checked here, so a bad option fails before any model is loaded.
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ConstraintError(f"`sparsity` must be in [0, 1), got {self.sparsity}", parameters=("sparsity",))
        for name in ("lr", "score_lr", "tau_start", "tau_end", "distill_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConstraintError(f"`{name}` must be a positive number, got {value}", parameters=(name,))
        if self.tau_end > self.tau_start:
            raise ConstraintError(f"the temperature must decay: `tau_end` {self.tau_end} > `tau_start` "
                                  f"{self.tau_start}", parameters=("tau_end", "tau_start"))
        if self.precision not in PRECISIONS:
            raise ConstraintError(f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)}")
        if self.method not in METHODS:
            raise ConstraintError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        if self.budget not in BUDGETS:
            raise ConstraintError(f"unknown budget {self.budget!r}; choose {' or '.join(BUDGETS)}")
        if (self.steps or 0) < 0 or (self.finetune_steps or 0) < 0 or (self.batch_size or 1) < 1 or self.workers < 0:
            raise ConstraintError("steps, fine-tune steps and workers must be >= 0 and the batch size >= 1")
        if self.threads is not None and self.threads < 1:
            raise ConstraintError(f"`threads` must be >= 1, got {self.threads}", parameters=("threads",))
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
