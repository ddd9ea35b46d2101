"""The distillation loss: a term per output role, zero at the teacher, Hinton's temperature scaling,
labels on one class output only, regression normalised by the dense variance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from smart_onnx.graph import OutputInfo, OutputRole
from smart_onnx.search.loss import FEATURE_VARIANCE_FLOOR, OutputScales, distillation_loss, feature_loss


def _class(name: str = "y", scores: str = "logits") -> OutputInfo:
    return OutputInfo(name, OutputRole.CLASS, "test", 2, 1, 0, scores)


def _regression(name: str = "y") -> OutputInfo:
    return OutputInfo(name, OutputRole.REGRESSION, "test")


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("scores", ["logits", "probs"])
def test_zero_at_the_teacher_and_positive_elsewhere(scores: str, temperature: float) -> None:
    torch.manual_seed(0)
    t = torch.randn(8, 10)
    if scores == "probs":
        t = t.softmax(1)
    outs = [_class(scores=scores)]
    assert float(distillation_loss({"y": t}, {"y": t}, outs, temperature=temperature)) == pytest.approx(0, abs=1e-6)
    other = torch.randn(8, 10).softmax(1) if scores == "probs" else torch.randn(8, 10)
    assert float(distillation_loss({"y": other}, {"y": t}, outs, temperature=temperature)) > 1e-3


def test_temperature_is_hintons_scaled_kl() -> None:
    torch.manual_seed(1)
    s, t, temp = torch.randn(6, 5), torch.randn(6, 5), 3.0
    want = temp**2 * F.kl_div(F.log_softmax(s / temp, 1), F.softmax(t / temp, 1), reduction="batchmean")
    got = distillation_loss({"y": s}, {"y": t}, [_class()], temperature=temp)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    plain = distillation_loss({"y": s}, {"y": t}, [_class()])
    assert float(plain) != pytest.approx(float(got), rel=1e-2)


def test_probabilities_soften_like_their_logits() -> None:
    torch.manual_seed(2)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    from_logits = distillation_loss({"y": s}, {"y": t}, [_class()], temperature=2.0)
    from_probs = distillation_loss({"y": s.softmax(1)}, {"y": t.softmax(1)}, [_class(scores="probs")], temperature=2.0)
    assert float(from_probs) == pytest.approx(float(from_logits), rel=1e-4)


def test_cross_entropy_goes_to_the_label_output_only_and_is_not_softened() -> None:
    torch.manual_seed(3)
    t = torch.randn(6, 5)
    boxes = torch.randn(6, 4)
    labels = torch.randint(0, 4, (6,))
    outs = [_regression("boxes"), _class("y")]
    for temp in (1.0, 5.0):
        got = distillation_loss({"y": t, "boxes": boxes}, {"y": t, "boxes": boxes}, outs, labels=labels,
                                label_output="y", label_weight=0.5, temperature=temp)
        assert float(got) == pytest.approx(0.5 * float(F.cross_entropy(t, labels)), rel=1e-5)
    # No label output named: the labels are not used at all.
    none = distillation_loss({"y": t, "boxes": boxes}, {"y": t, "boxes": boxes}, outs, labels=labels)
    assert float(none) == pytest.approx(0.0, abs=1e-6)


def test_sequence_is_distilled_per_step_over_the_class_axis() -> None:
    torch.manual_seed(4)
    s, t = torch.randn(3, 7, 5), torch.randn(3, 7, 5)  # [N, T, C]
    seq = OutputInfo("y", OutputRole.SEQUENCE, "test", 3, 2, 0, "logits")
    got = distillation_loss({"y": s}, {"y": t}, [seq])
    per_step = F.kl_div(F.log_softmax(s, 2), F.log_softmax(t, 2), log_target=True, reduction="none").sum(2)
    assert float(got) == pytest.approx(float(per_step.mean()), rel=1e-5)
    # Only one step differs: the loss is that step's KL over N*T positions.
    s2 = t.clone()
    s2[1, 3] = torch.randn(5)
    one = F.kl_div(F.log_softmax(s2[1, 3], 0), F.log_softmax(t[1, 3], 0), log_target=True, reduction="sum")
    assert float(distillation_loss({"y": s2}, {"y": t}, [seq])) == pytest.approx(float(one) / 21, rel=1e-5)


def test_regression_is_normalised_by_the_dense_variance_per_channel_and_ignores_the_temperature() -> None:
    torch.manual_seed(5)
    # Channel 0 in pixels (std 100), channel 1 a score (std 0.01): equal relative errors weigh alike.
    t = torch.randn(64, 2) * torch.tensor([100.0, 0.01])
    scales = OutputScales([_regression()])
    for chunk in t.split(16):
        scales.update({"y": chunk})
    variances = scales.variances()
    assert variances["y"].flatten().tolist() == pytest.approx(t.var(0, unbiased=False).tolist(), rel=1e-4)
    std = t.std(0, unbiased=False)
    err0 = t.clone()
    err0[:, 0] += 0.1 * std[0]  # 0.1 std on the pixel channel (~10 px)
    err1 = t.clone()
    err1[:, 1] += 0.1 * std[1]  # 0.1 std on the score channel (~0.001)
    a = distillation_loss({"y": err0}, {"y": t}, [_regression()], variances=variances, temperature=1.0)
    b = distillation_loss({"y": err1}, {"y": t}, [_regression()], variances=variances, temperature=7.0)
    assert float(a) == pytest.approx(float(b), rel=0.05)
    assert float(a) == pytest.approx(0.5 * 0.01, rel=1e-3)  # half the elements off by 0.1 std


def test_regression_never_sees_softmax() -> None:
    """Boxes that keep their argmax but move in value still cost: the term is not a KL."""
    t = torch.tensor([[10.0, 20.0, 30.0, 40.0]] * 4) + torch.randn(4, 4)
    s = t * 1.5  # same argmax, same softmax order, far off in value
    assert float(distillation_loss({"y": s}, {"y": t}, [_regression()])) > 1.0


def test_ignored_outputs_cost_nothing() -> None:
    ign = OutputInfo("y", OutputRole.IGNORE, "test")
    assert float(distillation_loss({"y": torch.randn(3, 3)}, {"y": torch.randn(3, 3)}, [ign])) == 0.0


def test_a_dead_feature_channel_weighs_like_a_quiet_one_not_like_1e13() -> None:
    # A ReLU feature [N, 3] whose third unit never fires in the dense model: a student that makes it fire
    # at a tenth of the live units' scale pays a bounded price (output channels keep per-channel floors).
    torch.manual_seed(6)
    live = torch.rand(64, 2) + 0.5
    t = torch.cat([live, torch.zeros(64, 1)], dim=1)
    scales = OutputScales([], features=["f"])
    scales.update({"f": t})
    var = scales.variances()["f"].flatten()
    power = float((t.double() ** 2).mean(0).mean())
    assert float(var[2]) == pytest.approx(FEATURE_VARIANCE_FLOOR * power, rel=1e-5)
    assert var[:2].tolist() == pytest.approx(t[:, :2].var(0, unbiased=False).tolist(), rel=1e-4)
    student = t.clone()
    student[:, 2] = 0.1 * live.mean()
    assert float(feature_loss({"f": student}, {"f": t}, scales.variances())) < 1.0
    as_output = OutputScales([OutputInfo("f", OutputRole.REGRESSION, "test")])
    as_output.update({"f": t})
    assert float(as_output.variances()["f"].flatten()[2]) < 1e-10
