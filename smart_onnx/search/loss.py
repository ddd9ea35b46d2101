"""Search/fine-tune loss: distillation to the dense model, plus cross-entropy when labels exist."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["OutputKind", "classify_outputs", "distillation_loss"]


@dataclass(frozen=True)
class OutputKind:
    """How an output is compared: 'logits' / 'probs' (KL over axis 1) or 'regression' (normalised MSE)."""

    name: str
    kind: str


def classify_outputs(teacher: Mapping[str, torch.Tensor]) -> list[OutputKind]:
    """Decide per float output whether it is class scores (KL) or anything else (normalised MSE).

    [N, C] with C > 1 is class-like; rows that are non-negative and sum to 1 are
    probabilities (a model ending in Softmax), otherwise logits.
    """
    kinds = []
    for name, t in teacher.items():
        if not t.is_floating_point():
            continue
        if t.dim() == 2 and t.shape[1] > 1:
            sums = t.sum(dim=1)
            probs = bool((t >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))
            kinds.append(OutputKind(name, "probs" if probs else "logits"))
        else:
            kinds.append(OutputKind(name, "regression"))
    return kinds


def _log_probs(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "probs":
        return torch.log(x.clamp_min(1e-8))
    return F.log_softmax(x, dim=1)


def distillation_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    kinds: list[OutputKind],
    labels: torch.Tensor | None = None,
    label_weight: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sum over outputs of KL(teacher || student) for class-like outputs, ||s - t||^2 / ||t||^2 otherwise;
    plus ``label_weight`` x cross-entropy on the first class-like output when ``labels`` are given.

    The KL compares both distributions softened by ``temperature`` (log-probabilities divided by it and
    renormalised) and is scaled by its square, Hinton's knowledge distillation: above 1, the teacher's
    small probabilities (which wrong classes it finds similar) carry weight, while the T^2 factor keeps
    the gradient's size independent of T. The cross-entropy always uses the unsoftened outputs.
    """
    total = torch.zeros((), device=next(iter(student.values())).device)
    ce_done = labels is None
    for k in kinds:
        s = student[k.name].float()
        t = teacher[k.name].float()
        if k.kind == "regression":
            total = total + ((s - t) ** 2).sum() / (t**2).sum().clamp_min(1e-12)
            continue
        log_s, log_t = _log_probs(s, k.kind), _log_probs(t, k.kind)
        soft_s, soft_t = (log_s, log_t) if temperature == 1.0 else (
            F.log_softmax(log_s / temperature, dim=1), F.log_softmax(log_t / temperature, dim=1))
        total = total + temperature**2 * F.kl_div(soft_s, soft_t, log_target=True, reduction="batchmean")
        if not ce_done:
            total = total + label_weight * F.nll_loss(log_s, labels)
            ce_done = True
    return total
