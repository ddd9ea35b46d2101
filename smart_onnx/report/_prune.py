"""``prune``'s report: :class:`PruneReport`, written as ``MODEL.pruned.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from smart_onnx._atomic import Record, from_fields
from smart_onnx.eval.compare import LayerRow, Totals
from smart_onnx.eval.fidelity import FidelityVerdict
from smart_onnx.eval.ort import EvalReport
from smart_onnx.eval.verify import RewriteCheck
from smart_onnx.graph import OutputInfo
from smart_onnx.hw import CheckReport
from smart_onnx.report._quantize import QuantizeInfo
from smart_onnx.report._schema import SCHEMA_VERSION, JsonReport

if TYPE_CHECKING:  # smart_onnx.search imports torch, which ``eval`` (an EvalResult) does not need
    from smart_onnx.search import History, PruneSeconds, SearchConfig, TrainingLog
    from smart_onnx.search.budget import StepPlan

__all__ = ["FrozenGroup", "PruneReport", "SparsitySummary"]


@dataclass
class SparsitySummary(Record):
    """Requested and achieved sparsity, as fractions of *all* prunable weights (and MACs).

    ``budget`` says what the request counted (None in N:M mode: the pattern's). ``searched``, where the
    searched units hold less than all prunable weights (frozen channel groups, layers outside the
    target's pattern), is the fraction of *their* weights (or MACs, by ``budget``) removed; None otherwise.
    """

    requested: float
    achieved_params: float
    achieved_macs: float
    budget: str | None = None
    searched: float | None = None

    omit_if_none = ("budget", "searched")


@dataclass
class FrozenGroup:
    """A channel-coupling group that channel mode may not prune, and why."""

    id: int
    layers: list[str]
    channels: int
    reason: str


@dataclass
class PruneReport(JsonReport):
    """Everything one ``prune`` run decided and measured.

    Attributes:
        command: the command line (None from the library).
        mode, method, budget, target: what ran (``target``: the profile's name, None without one).
        block: block shape per layer, canonical O x I x k (block mode, else None).
        nm: ``[N, M]`` (N:M mode, else None).
        search: the settings, with the step counts the plan chose.
        steps: the step plan and why.
        training: what the trainer used and why it stopped (features, augmentation, refit, early stop).
        sparsity: requested and achieved.
        layers: per prunable layer, before and after.
        frozen_groups: channel groups left whole, and why.
        outputs: every graph output's role and why.
        label_output: the class output the labels trained (None: none).
        export_relative_error, export_check: onnxruntime, rewritten vs masked model (``export_check``: None in
            a report written before it existed).
        history: loss, temperature, sparsity and validation curves.
        seconds: wall time per stage.
        check: the profile check of the pruned model (with a target).
        eval, fidelity: onnxruntime on the held-out data, and the verdict (with held-out data).
        totals: the layers' sums.
        provenance: what was written into the model's metadata.
        quantize: ``prune --quantize``: the INT8 model's settings, zeros, comparison and check.
        output: the path the model was written to (set by the CLI).
    """

    command: str | None
    seed: int
    mode: str
    method: str
    budget: str
    target: str | None
    block: dict[str, list[int]] | None
    nm: list[int] | None
    search: SearchConfig
    steps: StepPlan
    training: TrainingLog
    sparsity: SparsitySummary
    layers: list[LayerRow]
    frozen_groups: list[FrozenGroup]
    outputs: list[OutputInfo]
    label_output: str | None
    export_relative_error: float
    export_check: RewriteCheck | None
    history: History
    seconds: PruneSeconds  # filled in as prune() runs its stages
    check: CheckReport | None = None
    eval: EvalReport | None = None
    fidelity: FidelityVerdict | None = None
    totals: Totals | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    quantize: QuantizeInfo | None = None
    output: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the keys of every earlier report, in their order; optional ones only when set."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version, "command": self.command, "seed": self.seed, "mode": self.mode,
            "method": self.method, "budget": self.budget, "target": self.target, "block": self.block, "nm": self.nm,
            "search": _search_dict(self.search), "steps": self.steps.to_dict(),
            "training": self.training.to_dict(),
            "sparsity": self.sparsity.to_dict(), "layers": [r.to_dict() for r in self.layers],
            "frozen_groups": [asdict(g) for g in self.frozen_groups], "outputs": [o.to_dict() for o in self.outputs],
            "label_output": self.label_output, "export_relative_error": self.export_relative_error,
            "export_check": None if self.export_check is None else self.export_check.to_dict(),
            "history": self.history.to_dict(),
        }
        for key in ("check", "eval", "fidelity"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.to_dict()
        out["seconds"] = self.seconds.to_dict()
        out["totals"] = None if self.totals is None else self.totals.to_dict()
        out["provenance"] = self.provenance
        if self.quantize is not None:
            out["quantize"] = self.quantize.to_dict()
        if self.output is not None:
            out["output"] = self.output
        return out

    def caveat(self) -> str | None:
        """What a faithful verdict does not cover, where the run learned from few enough samples to augment them:
        the held-out data judged it, and inputs unlike the calibration data were not judged. EfficientNet-Lite0
        pruned to 50 % blocks from 64 crops of three photos kept cosine 0.95 on other crops of them and fell to
        0.2 on two other photos (docs/benchmarks.md, "Photos the calibration never saw")."""
        if self.fidelity is None or not self.fidelity.faithful or not self.training.augment:
            return None
        samples = self.training.calibration_samples + self.training.validation_samples
        return (f"note: learned from {samples} calibration samples; faithful on the held-out data given, which "
                "says little about inputs unlike the calibration data: calibrate on the inputs the model will meet")

    def remedies(self) -> list[str]:
        """What may bring a degraded output back, from what limited this run; empty where every output is
        faithful or none was judged.

        Most of the gap such a run leaves is generalisation: a model pruned from a few dozen samples reproduces
        them almost exactly and the held-out samples less well (docs/benchmarks.md), so what the run was short
        of comes first: the steps its time budget cut, then samples.
        """
        if self.fidelity is None or self.fidelity.faithful:
            return []
        out = []
        plan, budget = self.steps, self.search.time_budget
        if plan.asked is not None and budget is not None:
            out.append(f"a longer --time-budget: {budget:.0f} s fit {plan.steps}+{plan.finetune_steps} of the "
                       f"{plan.asked[0]}+{plan.asked[1]} search + fine-tune steps this run asked for")
        elif self.training.search_stopped is not None and budget is not None:
            out.append(f"a longer --time-budget: the search stopped at {budget:.0f} s "
                       f"({self.training.search_stopped})")
        elif self.training.search_replanned is not None and budget is not None:
            out.append(f"a longer --time-budget: the search fit {budget:.0f} s in fewer steps "
                       f"({self.training.search_replanned})")
        elif self.training.finetune_cut is not None and budget is not None:
            out.append(f"a longer --time-budget: the fine-tune still improved when {budget:.0f} s ended it "
                       f"({self.training.finetune_cut})")
        samples = self.training.calibration_samples + self.training.validation_samples
        if self.training.augment:
            out.append(f"more calibration samples: this run learned from {samples}, few enough to be augmented")
        if self.nm is None:
            out.append(f"a lower --sparsity than {self.sparsity.requested:.0%}")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruneReport:
        """The report from its JSON object (a report without ``schema_version`` is version 1)."""
        from smart_onnx.search import History, PruneSeconds, SearchConfig, TrainingLog
        from smart_onnx.search.budget import StepPlan

        def optional(key: str, read: Any) -> Any:
            return None if data.get(key) is None else read(data[key])

        return from_fields(
            cls, data,
            schema_version=data.get("schema_version", 1),
            # Reports from before the refit re-chose blocks lack the key: those runs did not.
            search=from_fields(SearchConfig, {"refit_reselect": False, **data["search"]}),
            steps=from_fields(StepPlan, data["steps"]),
            training=TrainingLog.from_dict(data["training"]),
            history=History.from_dict(data["history"]),
            seconds=PruneSeconds.from_dict(data.get("seconds", {})),
            sparsity=from_fields(SparsitySummary, data["sparsity"]),
            layers=[LayerRow.from_dict(r) for r in data["layers"]],
            frozen_groups=[from_fields(FrozenGroup, g) for g in data["frozen_groups"]],
            outputs=[OutputInfo.from_dict(o) for o in data["outputs"]],
            export_check=optional("export_check", lambda d: from_fields(RewriteCheck, d)),
            check=optional("check", CheckReport.from_dict),
            eval=optional("eval", EvalReport.from_dict),
            fidelity=optional("fidelity", lambda d: from_fields(FidelityVerdict, d)),
            totals=optional("totals", Totals.from_dict),
            quantize=optional("quantize", QuantizeInfo.from_dict),
        )


def _search_dict(search: SearchConfig) -> dict[str, Any]:
    """The search settings as written: ``refit_reselect`` only when on and ``threads`` only when given, as reports
    written before them read."""
    out = asdict(search)
    if not out["refit_reselect"]:
        del out["refit_reselect"]
    if out["threads"] is None:
        del out["threads"]
    return out
