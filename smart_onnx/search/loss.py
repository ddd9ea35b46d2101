"""Search/fine-tune loss: every output distilled to the dense model by its role, labels on one class output.

- class and sequence outputs: KL(teacher || student) over the class axis at a temperature,
  averaged over every other position (per sample, and per step for a sequence);
- regression outputs: mean squared error divided by the dense output's variance over the
  calibration set (per index of axis 1, the channel of an NCHW map or the feature of
  ``[N, D]``), so boxes in pixels and scores in [0, 1] weigh alike and no output dominates
  by its units;
- ignored outputs: nothing.

Softmax and cross-entropy never touch a regression output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from smart_onnx.graph import OutputInfo, OutputRole
from smart_onnx.graph.outputs import VARIANCE_FLOOR, variance_floor
from smart_onnx.search.distributed import any_over_ranks, reduce_named

__all__ = ["FEATURE_VARIANCE_FLOOR", "OutputScales", "distillation_loss", "feature_loss"]



# An internal feature's channel counts as having at least this share of the tensor's mean channel power.
# ReLU networks carry dead units (the MNIST CNN: 342 of the 1152 inputs of its first Linear never fire on
# 64 digits); a per-channel floor of their zero variance made any activity there weigh ~1e13 and the
# whole loss ~1e7. Outputs keep per-channel floors: one output may mix boxes in pixels with scores ~1e-4.
FEATURE_VARIANCE_FLOOR = 1e-2


class OutputScales:
    """Per-channel variance of each regression output and internal feature, accumulated over batches in place.

    Args:
        outputs: the outputs (regression ones are scaled; others are ignored).
        features: internal activations, floored against their own mean channel power as well.
        axes: the channel axis of a feature that is not axis 1 (graph.features.feature_axes).
    """

    def __init__(self, outputs: Sequence[OutputInfo], features: Sequence[str] = (),
                 axes: Mapping[str, int] | None = None) -> None:
        self._names = [o.name for o in outputs if o.role is OutputRole.REGRESSION] + list(features)
        self._features = set(features)
        self.axes = {n: a for n, a in (axes or {}).items() if a != 1}
        self._sum: dict[str, torch.Tensor] = {}
        self._sumsq: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}

    def update(self, teacher: Mapping[str, torch.Tensor]) -> None:
        for name in self._names:
            t = teacher[name].detach().double()
            axis = _axis(self.axes.get(name, 1), t.dim())
            dims = [d for d in range(t.dim()) if d != axis] if t.dim() >= 2 else list(range(t.dim()))
            s, sq = t.sum(dim=dims).cpu(), (t * t).sum(dim=dims).cpu()
            self._sum[name] = self._sum[name] + s if name in self._sum else s
            self._sumsq[name] = self._sumsq[name] + sq if name in self._sumsq else sq
            self._count[name] = self._count.get(name, 0) + t.numel() // max(1, s.numel())

    def sum_over_ranks(self) -> None:
        """Add up, in place, the sums each rank of a data-parallel run accumulated over its samples."""
        self._sum, self._sumsq = reduce_named(self._sum), reduce_named(self._sumsq)
        counts = reduce_named({k: torch.tensor([float(c)], dtype=torch.float64) for k, c in self._count.items()})
        self._count = {k: int(c.item()) for k, c in counts.items()}

    def variances(self) -> dict[str, torch.Tensor]:
        """Name -> variance per channel (float32, floored) as ``[1, channels]``, of axis 1 unless ``axes`` says
        otherwise; the loss lays it along the channel axis."""
        out = {}
        for name in self._names:
            if name not in self._count:
                continue
            n = self._count[name]
            mean, meansq = self._sum[name] / n, self._sumsq[name] / n
            var = (meansq - mean * mean).clamp_min(0.0)
            floor = variance_floor(meansq)
            if name in self._features:
                floor = torch.maximum(floor, FEATURE_VARIANCE_FLOOR * meansq.mean())
            var = torch.maximum(var, floor).float()
            out[name] = var.reshape(1, -1) if var.dim() == 1 else var
        return out


def _log_probs(x: torch.Tensor, info: OutputInfo) -> torch.Tensor:
    if info.scores == "probs":
        return torch.log(x.clamp_min(1e-8))
    return F.log_softmax(x, dim=info.class_axis)  # logits; renormalises log-probabilities exactly


def _tempered_log_probs(x: torch.Tensor, info: OutputInfo, temperature: float) -> torch.Tensor:
    """log softmax(log p / T); for logits that is log_softmax(x / T), one tensor instead of two."""
    if info.scores == "probs":
        log_p = _log_probs(x, info)
        return log_p if temperature == 1.0 else F.log_softmax(log_p / temperature, dim=info.class_axis)
    return F.log_softmax(x / temperature if temperature != 1.0 else x, dim=info.class_axis)


def _kl(student: torch.Tensor, teacher: torch.Tensor, info: OutputInfo, temperature: float) -> torch.Tensor:
    """KL(teacher || student) as the teacher's negative entropy minus the cross term.

    The teacher's side carries no gradient, so it is computed once without autograd and only
    its probabilities stay alive; on a [32, 32, 6625] CTC output this halves the loss's peak
    memory against ``kl_div`` on two log-probability tensors (same value and gradient).
    """
    axis = info.class_axis
    with torch.no_grad():
        log_t = _tempered_log_probs(teacher, info, temperature)
        p_t = log_t.exp()
        neg_entropy = torch.where(p_t > 0, p_t * log_t, 0.0).sum(dim=axis)
        del log_t
    cross = (p_t * _tempered_log_probs(student, info, temperature)).sum(dim=axis)
    return temperature**2 * (neg_entropy - cross).mean()


def _axis(axis: int, dim: int) -> int:
    """``axis`` as a non-negative index of a ``dim``-dimensional tensor (1 where it has no such axis)."""
    return axis % dim if -dim <= axis < dim else 1


def _channel_shape(dim: int, axis: int) -> tuple[int, ...]:
    if dim < 2:
        return (-1,)
    shape = [1] * dim
    shape[_axis(axis, dim)] = -1
    return tuple(shape)


def _normalised_mse(student: torch.Tensor, teacher: torch.Tensor, variance: torch.Tensor | None,
                    channels: torch.Tensor | None = None, axis: int = 1) -> torch.Tensor:
    err = (student - teacher) ** 2
    if variance is None:  # no calibration statistics: the batch's own scale
        return err.mean() / (teacher.var(unbiased=False) + teacher.pow(2).mean() * VARIANCE_FLOOR + 1e-30)
    shape = _channel_shape(err.dim(), axis)
    err = err / variance.reshape(shape).to(err.device)
    if channels is None:
        return err.mean()
    weight = channels.reshape(shape).to(err)
    return (err * weight).sum() / (weight.expand_as(err).sum()).clamp_min(1.0)


def distillation_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    outputs: Sequence[OutputInfo],
    *,
    variances: Mapping[str, torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
    label_output: str | None = None,
    label_weight: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sum over the outputs of their distillation terms, plus ``label_weight`` x cross-entropy on ``label_output``.

    The KL compares both distributions softened by ``temperature`` and is scaled by its
    square (Hinton's knowledge distillation): above 1 the teacher's small probabilities,
    which wrong classes it finds similar, carry weight, and the T^2 factor keeps the
    gradient's size independent of T. The cross-entropy uses the unsoftened scores.

    Args:
        student: the pruned model's outputs by name.
        teacher: the dense model's outputs on the same batch.
        outputs: the roles (outputs missing from ``teacher`` are skipped).
        variances: regression output -> dense variance per axis-1 index (:class:`OutputScales`).
        labels: integer class per sample, for ``label_output`` (a class output).
    """
    total = torch.zeros((), device=next(iter(student.values())).device)
    for info in outputs:
        if info.role is OutputRole.IGNORE or info.name not in teacher:
            continue
        s, t = student[info.name].float(), teacher[info.name].float()
        if info.role is OutputRole.REGRESSION:
            total = total + _normalised_mse(s, t, (variances or {}).get(info.name))
            continue
        total = total + _kl(s, t, info, temperature)
        if labels is not None and info.name == label_output:
            total = total + label_weight * F.nll_loss(_log_probs(s, info), labels)
    return total


def feature_loss(
    student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor], variances: Mapping[str, torch.Tensor],
    *, sharded: bool = False, placeholder: bool = False, axes: Mapping[str, int] | None = None,
) -> torch.Tensor:
    """Mean over the captured internal activations of their variance-normalised squared error, per channel
    of ``axes[name]`` (default 1).

    Channels the student holds at exactly zero over the whole batch are left out: they are
    channels pruning removed (channel mode), which no weight update can bring back, and
    comparing them would only add a constant. With ``sharded`` (this rank's slice of a
    data-parallel batch, on every rank) the whole batch is the global one: a channel alive on
    any rank is compared on all; a ``placeholder`` rank (a zero-weighted row, not part of the
    batch) adds no channel.
    """
    terms = []
    for name, s in student.items():
        if name not in teacher or s.dim() < 2:
            continue
        s, t = s.float(), teacher[name].float()
        axis = _axis((axes or {}).get(name, 1), s.dim())
        alive = s.detach().ne(0).movedim(axis, 0).flatten(1).any(dim=1)
        if sharded:
            alive = any_over_ranks(torch.zeros_like(alive) if placeholder else alive)
        terms.append(_normalised_mse(s, t, variances.get(name), alive, axis))
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).mean()
