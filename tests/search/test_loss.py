"""The distillation loss: output kinds, zero at the teacher, Hinton's temperature scaling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from smart_onnx.search.loss import OutputKind, classify_outputs, distillation_loss


def test_classify_outputs() -> None:
    logits = torch.randn(4, 10)
    kinds = classify_outputs({"logits": logits, "probs": logits.softmax(1), "boxes": torch.randn(4, 3, 5)})
    assert [k.kind for k in kinds] == ["logits", "probs", "regression"]


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_zero_at_the_teacher_and_positive_elsewhere(kind: str, temperature: float) -> None:
    torch.manual_seed(0)
    t = torch.randn(8, 10)
    if kind == "probs":
        t = t.softmax(1)
    kinds = [OutputKind("y", kind)]
    assert float(distillation_loss({"y": t}, {"y": t}, kinds, temperature=temperature)) == pytest.approx(0, abs=1e-6)
    other = torch.randn(8, 10).softmax(1) if kind == "probs" else torch.randn(8, 10)
    assert float(distillation_loss({"y": other}, {"y": t}, kinds, temperature=temperature)) > 1e-3


def test_temperature_is_hintons_scaled_kl() -> None:
    torch.manual_seed(1)
    s, t, temp = torch.randn(6, 5), torch.randn(6, 5), 3.0
    want = temp**2 * F.kl_div(F.log_softmax(s / temp, 1), F.softmax(t / temp, 1), reduction="batchmean")
    got = distillation_loss({"y": s}, {"y": t}, [OutputKind("y", "logits")], temperature=temp)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    # Softened targets: different from the plain KL.
    plain = distillation_loss({"y": s}, {"y": t}, [OutputKind("y", "logits")])
    assert float(plain) != pytest.approx(float(got), rel=1e-2)


def test_probabilities_soften_like_their_logits() -> None:
    torch.manual_seed(2)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    kinds_l, kinds_p = [OutputKind("y", "logits")], [OutputKind("y", "probs")]
    from_logits = distillation_loss({"y": s}, {"y": t}, kinds_l, temperature=2.0)
    from_probs = distillation_loss({"y": s.softmax(1)}, {"y": t.softmax(1)}, kinds_p, temperature=2.0)
    assert float(from_probs) == pytest.approx(float(from_logits), rel=1e-4)


def test_cross_entropy_is_not_softened() -> None:
    torch.manual_seed(3)
    t = torch.randn(6, 5)
    labels = torch.randint(0, 5, (6,))
    kinds = [OutputKind("y", "logits")]
    for temp in (1.0, 5.0):
        got = distillation_loss({"y": t}, {"y": t}, kinds, labels, label_weight=0.5, temperature=temp)
        assert float(got) == pytest.approx(0.5 * float(F.cross_entropy(t, labels)), rel=1e-5)


def test_regression_outputs_ignore_the_temperature() -> None:
    s, t = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
    kinds = [OutputKind("y", "regression")]
    a = distillation_loss({"y": s}, {"y": t}, kinds, temperature=1.0)
    b = distillation_loss({"y": s}, {"y": t}, kinds, temperature=7.0)
    assert float(a) == pytest.approx(float(b)) == pytest.approx(float(((s - t) ** 2).sum() / (t**2).sum()))
