"""Per-output fidelity of a candidate to its reference, judged by each output's role.

Every output gets a cosine (mean over samples of the per-sample cosine) and a relative
L2 error (class scores given as logits are centred per sample first: softmax ignores
their mean). Regression outputs also get a per-channel cosine, on values standardised per
axis-1 channel, so the offset of boxes in pixels and one large channel cannot hide a broken
one. Class outputs add top-1 agreement (and accuracy on the labelled one), sequence outputs
per-step agreement and greedy-decode agreement. An output's *fidelity* is the one number a
gate compares: agreement for class outputs, decode agreement for sequences, the lower of the
two cosines for everything else. A model is only as good as its worst output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from smart_onnx._format import percent
from smart_onnx.graph import OutputInfo, OutputRole
from smart_onnx.graph.outputs import variance_floor

__all__ = [
    "COSINE_WARNING",
    "FidelityVerdict",
    "OutputComparison",
    "OutputMetrics",
    "compare_outputs",
    "judge_fidelity",
    "output_table",
    "verdict_lines",
]

# Below this cosine an output is reported as degraded whatever the gate says.
COSINE_WARNING = 0.95
# Greedy CTC decoding drops this class (the blank of CTC models as exported by PyTorch and Paddle).
CTC_BLANK = 0


@dataclass
class OutputMetrics:
    """Candidate vs reference on one output, over all evaluated samples."""

    name: str
    role: str
    cosine: float
    relative_error: float
    channel_cosine: float | None = None  # regression: cosine after standardising each channel (see above)
    top1_agreement: float | None = None  # class: per sample; sequence: per step
    decode_agreement: float | None = None  # sequence: whole greedy CTC decodes equal
    accuracy: float | None = None  # the labelled class output only
    reference_accuracy: float | None = None

    @property
    def fidelity(self) -> float | None:
        """The number a gate compares (None for ignored outputs)."""
        if self.role == OutputRole.CLASS.value:
            return self.top1_agreement
        if self.role == OutputRole.SEQUENCE.value:
            return self.decode_agreement
        if self.role == OutputRole.REGRESSION.value:
            return self.cosine if self.channel_cosine is None else min(self.cosine, self.channel_cosine)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fidelity": self.fidelity}


def _per_sample(value: np.ndarray, batch_axis: int) -> np.ndarray:
    moved = np.moveaxis(value, batch_axis, 0) if value.ndim > batch_axis else value.reshape(1, -1)
    return moved.reshape(len(moved), -1).astype(np.float64)


def _comparable(value: np.ndarray, info: OutputInfo) -> np.ndarray:
    """Logits and log-probabilities minus their mean over the class axis: softmax ignores that offset,
    so distillation leaves it free and it says nothing about fidelity."""
    if info.is_categorical and info.scores != "probs":
        return value - value.mean(axis=info.class_axis, keepdims=True, dtype=np.float64)
    return value


class _ChannelSums:
    """Per-channel sums of reference, candidate, their squares and product, for the standardised cosine.

    A raw cosine of boxes in pixels forgives almost anything (their mean offset dominates:
    predicting the average box scores ~0.98), and in an output that mixes box coordinates
    (~100) with class scores (~1e-4) it sees only the boxes. Standardised by the reference's
    mean and spread per axis-1 channel, every channel weighs alike and offsets no longer count;
    the floors match the training loss's. Sums (not the values) are kept so the whole set is
    judged without holding it.
    """

    def __init__(self) -> None:
        self.count = 0
        self.sums: list[np.ndarray] | None = None  # r, r^2, c, c^2, r*c per channel

    def add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        axes = tuple(d for d in range(ref.ndim) if d != 1)  # regression outputs are batch-first: axis 1 is the channel
        r, c = ref.astype(np.float64), cand.astype(np.float64)
        parts = [r.sum(axis=axes), (r * r).sum(axis=axes), c.sum(axis=axes), (c * c).sum(axis=axes),
                 (r * c).sum(axis=axes)]
        self.sums = parts if self.sums is None else [a + b for a, b in zip(self.sums, parts)]
        self.count += ref.size // max(1, ref.shape[1])

    def cosine(self) -> float:
        assert self.sums is not None
        n = self.count
        s_r, s_rr, s_c, s_cc, s_rc = self.sums
        mean, meansq = s_r / n, s_rr / n
        floor = variance_floor(meansq)
        var = np.maximum(meansq - mean * mean, floor)
        # sum over samples of (r - mean)(c - mean) / var, expanded into the sums
        dot = float(np.sum((s_rc - mean * (s_r + s_c) + n * mean * mean) / var))
        norm_r = float(np.sum(np.maximum(s_rr - 2 * mean * s_r + n * mean * mean, 0.0) / var))
        norm_c = float(np.sum(np.maximum(s_cc - 2 * mean * s_c + n * mean * mean, 0.0) / var))
        scale = float(np.sum((s_rr + s_cc) / var)) * 1e-12  # what float64 cancellation leaves of exact zeros
        if norm_r <= scale or norm_c <= scale:
            return float(norm_r <= scale and norm_c <= scale)
        return dot / (norm_r * norm_c) ** 0.5


def _sample_cosines(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    dots = np.einsum("ij,ij->i", ref, cand)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(cand, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), both_zero.astype(np.float64))


def _greedy_decode(steps: np.ndarray) -> tuple[int, ...]:
    """Argmax path with repeats merged and blanks dropped."""
    out, prev = [], None
    for c in steps.tolist():
        if c != prev and c != CTC_BLANK:
            out.append(c)
        prev = c
    return tuple(out)


class _Ratio:
    """Hits over a count, accumulated."""

    def __init__(self) -> None:
        self.hits = 0.0
        self.total = 0

    def add(self, hits: np.ndarray) -> None:
        self.hits += float(np.sum(hits))
        self.total += hits.size

    def value(self, empty: float | None = None) -> float | None:
        return self.hits / self.total if self.total else empty


class _OutputSums:
    """Everything the metrics of one output need, summed over batches."""

    def __init__(self, info: OutputInfo) -> None:
        self.info = info
        self.samples = 0
        self.cosines = _Ratio()
        self.err_sq = self.ref_sq = 0.0
        self.channels = _ChannelSums() if info.role is OutputRole.REGRESSION else None
        self.agreement, self.decodes = _Ratio(), _Ratio()
        self.accuracy, self.reference_accuracy = _Ratio(), _Ratio()

    def add(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None) -> None:
        info = self.info
        r, c = (_per_sample(_comparable(v, info), info.batch_axis) for v in (ref, cand))
        self.samples += len(r)
        self.cosines.add(_sample_cosines(r, c))
        self.err_sq += float(np.sum((c - r) ** 2))
        self.ref_sq += float(np.sum(r * r))
        if self.channels is not None and ref.ndim >= 2:
            self.channels.add(ref, cand)
        if info.is_categorical:
            self._categorical(ref, cand, labels)

    def _categorical(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None) -> None:
        info = self.info
        ref_top, cand_top = ref.argmax(info.class_axis), cand.argmax(info.class_axis)
        self.agreement.add(ref_top == cand_top)
        if info.role is OutputRole.SEQUENCE:
            time_axis = 1 - info.batch_axis  # of the argmax paths, which lost the class axis
            r_paths, c_paths = np.moveaxis(ref_top, time_axis, 1), np.moveaxis(cand_top, time_axis, 1)
            self.decodes.add(np.array([_greedy_decode(r) == _greedy_decode(c) for r, c in zip(r_paths, c_paths)]))
        elif labels is not None and len(labels) == len(ref):
            self.accuracy.add(cand_top == labels)
            self.reference_accuracy.add(ref_top == labels)

    def metrics(self) -> OutputMetrics:
        info = self.info
        rnorm = self.ref_sq ** 0.5
        rel = self.err_sq ** 0.5 / rnorm if rnorm > 0 else self.err_sq ** 0.5
        m = OutputMetrics(info.name, info.role.value, self.cosines.value(1.0), rel)
        if self.channels is not None and self.channels.sums is not None and self.samples > 1:
            m.channel_cosine = self.channels.cosine()
        if info.is_categorical:
            m.top1_agreement = self.agreement.value()
            if info.role is OutputRole.SEQUENCE:
                m.decode_agreement = self.decodes.value(1.0)
            elif self.accuracy.total == self.samples:  # every sample labelled
                m.accuracy, m.reference_accuracy = self.accuracy.value(), self.reference_accuracy.value()
        return m


class OutputComparison:
    """Candidate vs reference on every output, fed one batch at a time: memory does not grow with the samples.

    Args:
        outputs: the roles, from :func:`smart_onnx.graph.infer_output_roles` on the reference
            (outputs it lacks count as regression; non-float outputs are ignored).
        label_output: the class output labels are scored on.
    """

    def __init__(self, outputs: Sequence[OutputInfo], label_output: str | None = None) -> None:
        self._roles = {o.name: o for o in outputs}
        self._label_output = label_output
        self._sums: dict[str, _OutputSums] = {}

    def add(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
            labels: np.ndarray | None = None) -> None:
        """One batch of both models' outputs by name (samples along each output's batch axis)."""
        for name, ref in reference.items():
            if name not in self._sums:
                info = self._roles.get(name) or OutputInfo(name, OutputRole.REGRESSION, "not in the roles")
                if not np.issubdtype(ref.dtype, np.floating) and info.role is not OutputRole.IGNORE:
                    info = OutputInfo(name, OutputRole.IGNORE, "not floating point")
                self._sums[name] = _OutputSums(info)
            self._sums[name].add(ref, candidate[name], labels if name == self._label_output else None)

    def metrics(self) -> list[OutputMetrics]:
        return [s.metrics() for s in self._sums.values()]


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    outputs: Sequence[OutputInfo],
    labels: np.ndarray | None = None,
    label_output: str | None = None,
) -> list[OutputMetrics]:
    """Per-output metrics of whole-set outputs (one batch of :class:`OutputComparison`).

    Args:
        reference, candidate: outputs by name (samples along each output's batch axis).
        outputs: the roles, from :func:`smart_onnx.graph.infer_output_roles` on the reference.
        labels: one class per sample, scored on ``label_output`` only.
    """
    comparison = OutputComparison(outputs, label_output)
    comparison.add(reference, candidate, labels)
    return comparison.metrics()


@dataclass
class FidelityVerdict:
    """The judgement over all outputs: warnings for degraded ones, and the gate's result if one was set."""

    min_fidelity: float | None
    passed: bool  # the gate held (always True without a gate)
    degraded: list[str] = field(default_factory=list)  # outputs below COSINE_WARNING or below the gate
    warnings: list[str] = field(default_factory=list)
    worst: str | None = None
    worst_fidelity: float | None = None

    @property
    def faithful(self) -> bool:
        return self.passed and not self.degraded

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "faithful": self.faithful}


def judge_fidelity(metrics: Sequence[OutputMetrics], min_fidelity: float | None = None) -> FidelityVerdict:
    """Warnings for every judged output whose cosine is below :data:`COSINE_WARNING` or whose fidelity
    is below ``min_fidelity``; the gate fails when any fidelity is below ``min_fidelity``."""
    verdict = FidelityVerdict(min_fidelity, passed=True)
    for m in metrics:
        value = m.fidelity
        if value is None:
            continue
        if verdict.worst_fidelity is None or value < verdict.worst_fidelity:
            verdict.worst, verdict.worst_fidelity = m.name, value
        problems = []
        if not m.cosine >= COSINE_WARNING:
            problems.append(f"cosine {m.cosine:.4f} < {COSINE_WARNING}")
        if m.channel_cosine is not None and not m.channel_cosine >= COSINE_WARNING:
            problems.append(f"per-channel cosine {m.channel_cosine:.4f} < {COSINE_WARNING}")
        if min_fidelity is not None and not value >= min_fidelity:
            verdict.passed = False
            problems.append(f"fidelity {value:.4f} < the minimum {min_fidelity}")
        if problems:
            verdict.degraded.append(m.name)
            verdict.warnings.append(f"output {m.name!r} ({m.role}): {'; '.join(problems)} "
                                    f"(relative error {m.relative_error:.3g})")
    return verdict


def output_table(outputs: Sequence[OutputMetrics], degraded: Sequence[str] = ()) -> tuple[list[str], list[list]]:
    """Header and rows of the per-output table that ``prune``, ``eval`` and the HTML page show.

    Args:
        outputs: the metrics of each output.
        degraded: names of the outputs :func:`judge_fidelity` flagged.
    """
    header = ["output", "role", "cosine", "channel cos.", "rel. error", "agreement", "decode agr.",
              "accuracy ref -> pruned", "status"]
    rows = []
    for o in outputs:
        acc = "" if o.accuracy is None else f"{percent(o.reference_accuracy)} -> {percent(o.accuracy)}"
        status = "ignored" if o.fidelity is None else ("DEGRADED" if o.name in degraded else "ok")
        chan = "-" if o.channel_cosine is None else f"{o.channel_cosine:.5f}"
        rows.append([o.name, o.role, f"{o.cosine:.5f}", chan, f"{o.relative_error:.3g}",
                     percent(o.top1_agreement), percent(o.decode_agreement), acc, status])
    return header, rows


def verdict_lines(fidelity: FidelityVerdict | None) -> list[str]:
    """WARNING lines for degraded outputs, then the verdict: never 'pass' beside a degraded output."""
    if fidelity is None:
        return ["result: not judged (no evaluation data)"]
    lines = [f"WARNING: {w}" for w in fidelity.warnings]
    if not fidelity.passed:
        lines.append(f"result: FAIL (output {fidelity.worst!r} below the minimum {fidelity.min_fidelity})")
    elif fidelity.degraded:
        lines.append(f"result: DEGRADED ({', '.join(fidelity.degraded)}): check these outputs before use")
    else:
        worst = fidelity.worst
        lines.append("result: every output faithful" + (
            f" (worst: {worst!r} at {fidelity.worst_fidelity:.4f})" if worst is not None else ""))
    return lines
