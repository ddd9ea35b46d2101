"""What a prune run records for its report besides the mask: the training log, the curves, the stage times.

Each is a typed record whose ``to_dict`` writes the JSON object reports have always held (the
same keys in the same order; keys of what did not happen left out) and whose ``from_dict``
reads it back, also from reports that lack keys added later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from smart_onnx._atomic import Record, StageSeconds, from_fields

__all__ = ["History", "PruneSeconds", "RefitLog", "TrainingLog"]


@dataclass
class RefitLog:
    """What the refit after hardening did (search/refit.py).

    Attributes:
        layers: layers refitted.
        skipped: layer -> why it was not refitted.
        mean_error_before, mean_error_after: the refitted layers' mean relative output error (None: none refitted).
        passes: passes over the calibration data.
        stopped: why it ended before every layer (the time budget); then only it and ``units_moved`` are written.
        units_moved: units the refit newly kept in place of as many it pruned (``refit_reselect``; written
            only when some moved).
        samples: the samples its first pass fitted, augmented views of them included.
        views: the augmented views of each calibration sample among them (written only when some).
        paced: the fewest samples a later pass fitted, where the time budget left it fewer of the views
            (written only then).
        paced_passes: how many passes fitted fewer samples than the first (written only when some): the pacing
            may give a later pass back the views an earlier one dropped.
    """

    layers: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    mean_error_before: float | None = None
    mean_error_after: float | None = None
    passes: int = 0
    stopped: str | None = None
    units_moved: int = 0
    samples: int = 0
    views: int = 0
    paced: int = 0
    paced_passes: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # as reports written before they were counted
        for key in ("units_moved", "samples", "views", "paced", "paced_passes"):
            if not out[key]:
                del out[key]
        if self.stopped is not None:
            return {k: v for k, v in out.items() if k in ("stopped", "units_moved")}
        del out["stopped"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefitLog:
        return from_fields(cls, data)


# Written only when they happened: a re-plan or a stop of the search at the time budget, the refit, a fine-tune
# that could run on past its plan, or one the time budget ended while it still improved.
_OCCASIONAL = ("search_replanned", "search_stopped", "refit", "finetune_run_on", "finetune_cut")


@dataclass
class TrainingLog:
    """What the trainer used and why each phase ended.

    Attributes:
        features: the internal activations distilled besides the outputs.
        feature_weight: their weight in the loss.
        augment: whether training batches were augmented.
        calibration_samples: samples trained on (the validation split excluded).
        validation_samples: samples held out for the fine-tune's early stopping.
        early_stopping: what the fine-tune's candidates were judged on (``"off"``, ``"on held-out samples"``, ...).
        search_replanned: the search's step count re-planned on measured step times, and why (None: it was not).
        search_stopped: the search stopped at the time budget, and where (None: it ran its steps).
        refit: the refit after hardening (None: off).
        stopped: why the fine-tune stopped early (None: it ran every step).
        finetune_run_on: how far the fine-tune could run on past its planned steps (None: it could not).
        finetune_cut: the time budget ended the fine-tune while its last held-out check still improved, and
            where (None: it did not).
    """

    features: list[str] = field(default_factory=list)
    feature_weight: float = 0.0
    augment: bool = False
    calibration_samples: int = 0
    validation_samples: int = 0
    early_stopping: str = "off"
    search_replanned: str | None = None
    search_stopped: str | None = None
    refit: RefitLog | None = None
    stopped: str | None = None
    finetune_run_on: str | None = None
    finetune_cut: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if not (f.name in _OCCASIONAL and getattr(self, f.name) is None)}
        if self.refit is not None:
            out["refit"] = self.refit.to_dict()  # in its place: the key is there already
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingLog:
        refit = data.get("refit")
        return from_fields(cls, data, refit=None if refit is None else RefitLog.from_dict(refit))


@dataclass
class History(Record):
    """The curves of one run, one value per step (``validation_loss``: per held-out check).

    Attributes:
        loss: the search's training loss.
        tau: the soft mask's temperature.
        sparsity: the soft mask's sparsity.
        finetune_loss: the fine-tune's training loss.
        validation_loss: the fine-tune's held-out loss, first of the weights as hardened and refitted.
    """

    loss: list[float] = field(default_factory=list)
    tau: list[float] = field(default_factory=list)
    sparsity: list[float] = field(default_factory=list)
    finetune_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)


@dataclass
class PruneSeconds(StageSeconds):
    """Wall time of each stage of ``prune``: :func:`~smart_onnx.search.run_search` times ``statistics`` to
    ``finetune``, :func:`smart_onnx.prune.prune` the rest (``check`` with a target, ``refit`` when on)."""

    analysis: float | None = None
    statistics: float | None = None
    search: float | None = None
    refit: float | None = None
    finetune: float | None = None
    export: float | None = None
    check: float | None = None
    eval: float | None = None
