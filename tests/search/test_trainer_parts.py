"""Feature points, the feature term, image augmentation and early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devkit.zoo import export, mlp_gemm
from smart_onnx.data import dataset_from_arrays
from smart_onnx.data.augment import ImageAugmenter
from smart_onnx.graph import find_prunable_layers
from smart_onnx.graph.features import feature_axes, feature_points
from smart_onnx.model import InputSpec, load_model, normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import History, SearchConfig, TrainingLog
from smart_onnx.search.loss import OutputScales, feature_loss
from tests.transformers import encoder


def test_feature_points_are_residual_merges_spread_along_the_graph() -> None:
    model = load_model("models/fashion_resnet.onnx")
    layers = [lay.name for lay in find_prunable_layers(model)]
    points = feature_points(model, layers, limit=3)
    assert len(points) == 3 and all("Add" in p for p in points)
    assert points[-1] == feature_points(model, layers, limit=100)[-1]  # the deepest merge is always kept
    assert feature_points(model, layers, limit=0) == []


def test_plain_chains_fall_back_to_layer_inputs() -> None:
    module, example = mlp_gemm()
    model = normalize(export(module, example, dynamo=False, opset=17))
    layers = [lay.name for lay in find_prunable_layers(model)]
    points = feature_points(model, layers)
    assert points and model.inputs[0].name not in points


@pytest.mark.parametrize("between", ["", "Where", "Reshape"])
def test_attention_scores_plus_their_mask_are_no_feature_point(between: str) -> None:
    # One attention head over h = x W [N, S, 8] with its key padding mask added to the scores, then a residual Add;
    # the masked scores reach the Softmax directly or through a Where (another mask) or a Reshape.
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), n) for n in ("w", "wq", "wk")]
    constants = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("one", 1.0), ("low", -1e4))]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="h"),
             helper.make_node("MatMul", ["h", "wq"], ["q"], name="q"),
             helper.make_node("MatMul", ["h", "wk"], ["k"], name="k"),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Unsqueeze", ["mask", "axis1"], ["mask3"]),
             helper.make_node("Sub", ["one", "mask3"], ["padding"]),
             helper.make_node("Mul", ["padding", "low"], ["bias"]),
             helper.make_node("Add", ["scores", "bias"], ["masked"]),
             *{"": [],
               "Where": [helper.make_node("Greater", ["masked", "low"], ["keep"]),
                         helper.make_node("Where", ["keep", "masked", "low"], ["softmax_in"])],
               "Reshape": [helper.make_node("Reshape", ["masked", "same_shape"], ["softmax_in"])]}[between],
             helper.make_node("Softmax", ["softmax_in" if between else "masked"], ["probs"], axis=-1),
             helper.make_node("MatMul", ["probs", "h"], ["context"]),
             helper.make_node("Add", ["h", "context"], ["residual"]),
             helper.make_node("Identity", ["residual"], ["y"])]
    axis = numpy_helper.from_array(np.array([1], np.int64), "axis1")
    same_shape = numpy_helper.from_array(np.array([0, 4, 4], np.int64), "same_shape")
    graph = helper.make_graph(nodes, "masked_attention",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8]),
                               helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8])],
                              [*weights, *constants, axis, same_shape])
    model = normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8))
    assert feature_points(model, ["h", "q", "k"]) == ["residual"]


@pytest.mark.parametrize("opset", [14, 17], ids=["decomposed-layernorm", "fused-layernorm"])
def test_a_residual_streams_channels_are_its_last_axis(opset: int) -> None:
    model = encoder(opset=opset, classes=3)
    points = feature_points(model, [])
    axes = feature_axes(model, points)
    assert points and all(axes[p] == -1 for p in points if "Add" in p and "attention/self" not in p.lower())
    resnet = load_model("models/fashion_resnet.onnx")
    resnet_points = feature_points(resnet, [lay.name for lay in find_prunable_layers(resnet)])
    assert set(feature_axes(resnet, resnet_points).values()) == {1}  # [batch, channels, h, w]


def test_features_are_normalised_per_channel_of_their_axis() -> None:
    # [batch, sequence, hidden]: hidden channel 0 is 5x louder than the others; per channel of axis -1 an
    # error of one standard deviation weighs alike in every channel.
    t = torch.randn(256, 5, 4)
    t[..., 0] *= 5
    scales = OutputScales([], features=["f"], axes={"f": -1})
    scales.update({"f": t})
    var = scales.variances()
    assert tuple(var["f"].shape) == (1, 4) and float(var["f"][0, 0]) > 15 * float(var["f"][0, 1])
    loud, quiet = t.clone(), t.clone()
    loud[..., 0] += 5.0
    quiet[..., 1] += 1.0
    by_hidden = [float(feature_loss({"f": s}, {"f": t}, var, axes={"f": -1})) for s in (loud, quiet)]
    assert by_hidden[0] == pytest.approx(by_hidden[1], rel=0.2)
    by_position = [float(feature_loss({"f": s}, {"f": t}, {"f": torch.ones(1, 5)})) for s in (loud, quiet)]
    assert by_position[0] > 20 * by_position[1]  # what axis 1 (the sequence) made of it


def test_feature_loss_skips_channels_the_student_lost() -> None:
    t = torch.randn(4, 3, 5, 5)
    s = t.clone()
    s[:, 1] = 0.0  # a removed channel: nothing can bring it back
    var = torch.ones(1, 3)
    assert float(feature_loss({"f": s}, {"f": t}, {"f": var})) == pytest.approx(0.0, abs=1e-7)
    s[:, 0] += 1.0
    assert float(feature_loss({"f": s}, {"f": t}, {"f": var})) == pytest.approx(0.5, rel=1e-5)  # 1 of 2 live


def test_a_placeholder_rank_adds_no_live_channel() -> None:
    t = torch.randn(4, 3, 5, 5)
    var = torch.ones(1, 3)
    assert float(feature_loss({"f": t + 1}, {"f": t}, {"f": var}, sharded=True)) == pytest.approx(1.0, rel=1e-5)
    # in one process the placeholder's channels are all there is: none compared
    assert float(feature_loss({"f": t + 1}, {"f": t}, {"f": var}, sharded=True, placeholder=True)) == 0.0


@pytest.mark.parametrize("channels_first", [True, False])
def test_augmenter_changes_images_reproducibly_and_leaves_other_inputs(channels_first: bool) -> None:
    shape = ("N", 3, 16, 16) if channels_first else ("N", 16, 16, 3)
    specs = [InputSpec("img", shape, np.dtype(np.float32)), InputSpec("ids", ("N", 4), np.dtype(np.int64))]
    x = torch.rand(5, *shape[1:])
    ids = torch.arange(20).reshape(5, 4)
    a, b = ImageAugmenter(specs, seed=3), ImageAugmenter(specs, seed=3)
    out_a, out_b = a({"img": x, "ids": ids}), b({"img": x, "ids": ids})
    assert out_a["img"].shape == x.shape and torch.equal(out_a["img"], out_b["img"])
    assert torch.equal(out_a["ids"], ids) and not torch.allclose(out_a["img"], x)
    assert a.active and not ImageAugmenter(specs[1:]).active


def test_early_stopping_restores_the_best_held_out_weights() -> None:
    module, example = mlp_gemm()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((200, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    # A learning rate that makes the fine-tune diverge: the held-out loss stops improving at once.
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4), latency=False, search=SearchConfig(
        sparsity=0.5, steps=5, finetune_steps=400, batch_size=16, lr=1.0, time_budget=None, patience=2)))
    training, history = outcome.report.training, outcome.report.history
    assert training.validation_samples == 20 and "did not improve" in (training.stopped or "")
    assert len(history.finetune_loss) < 400 and len(history.validation_loss) >= 3


def test_too_few_to_hold_out_judges_the_fine_tune_on_the_calibration_samples() -> None:
    module, example = mlp_gemm()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)  # 10% = 4 < 8
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    # Not augmented (as inputs that are not images are not): no augmented views to judge on.
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4), latency=False, search=SearchConfig(
        sparsity=0.5, steps=5, finetune_steps=400, batch_size=16, lr=1.0, time_budget=None, patience=2,
        augment=False)))
    training, history = outcome.report.training, outcome.report.history
    assert training.validation_samples == 0 and training.calibration_samples == 40
    assert training.early_stopping.startswith("on the calibration samples")
    # The diverging fine-tune is judged on those samples and stopped (the best check's weights are kept).
    assert "did not improve" in (training.stopped or "") and len(history.finetune_loss) < 400
    assert len(history.validation_loss) >= 3 and history.validation_loss[-1] > min(history.validation_loss)


def test_fine_tune_learning_rate_ramps_up() -> None:
    from smart_onnx.search.phases import FINETUNE_WARMUP, FinetunePhase

    class _Trainer:
        weight_params = [torch.nn.Parameter(torch.full((2,), 0.5))]
        trained = {"w": weight_params[0]}
        validation = None

        def loss(self, transforms):
            return (self.weight_params[0] - 1).pow(2).sum()

        def validation_loss(self, transforms):
            return None

    config = SearchConfig(lr=0.1)
    trainer = _Trainer()
    rms = float(trainer.weight_params[0].detach().pow(2).mean().sqrt())
    phase = FinetunePhase(trainer, {}, 400, config, History(), TrainingLog(), None, None)
    lrs = []
    for step in (0, FINETUNE_WARMUP // 2 - 1, FINETUNE_WARMUP - 1, 300):
        phase.loss(step)
        lrs.append(phase.optimizers[0].param_groups[0]["lr"] / rms)  # relative to the tensor's RMS
    assert lrs == pytest.approx([0.1 / FINETUNE_WARMUP, 0.05, 0.1, 0.1])


class _QuadraticTrainer:
    """A fake trainer: one weight pulled towards 1 by noisy gradients; the held-out loss records what it judged."""

    def __init__(self, held_out: bool) -> None:
        from smart_onnx.search.precision import Precision

        self.weight_params = [torch.nn.Parameter(torch.full((3,), 0.5))]
        self.trained = {"w": self.weight_params[0]}
        self.precision = Precision("cpu", "fp32")
        self.held_out, self.judged, self.steps = held_out, [], []
        self.noise = torch.Generator().manual_seed(0)

    def loss(self, transforms):
        target = 1 + torch.randn(3, generator=self.noise)
        return (self.weight_params[0] - target).pow(2).sum()

    def validation_loss(self, transforms):
        if not self.held_out:
            return None
        self.judged.append(self.weight_params[0].detach().clone())
        return float((self.judged[-1] - 1).pow(2).sum())


@pytest.mark.parametrize("held_out", [True, False])
def test_fine_tune_judges_and_keeps_a_running_average_of_the_weights(held_out: bool) -> None:
    from smart_onnx.search.phases import AVERAGE_SPAN, FinetunePhase

    trainer, steps = _QuadraticTrainer(held_out), 200
    phase = FinetunePhase(trainer, {}, steps, SearchConfig(lr=0.2, patience=1000), History(), TrainingLog(), None,
                          None)
    weights = []
    original_after_step = phase.after_step

    def after_step(step: int, value: float) -> str | None:
        weights.append(trainer.weight_params[0].detach().clone())  # the weights the step left
        stopped = original_after_step(step, value)
        assert torch.equal(trainer.weight_params[0].detach(), weights[-1])  # judging did not change them
        return stopped

    phase.after_step = after_step
    assert phase.run() is None and len(weights) == steps
    decay, average = 1 - 1 / (AVERAGE_SPAN * steps), torch.full((3,), 0.5)
    averages = []
    for w in weights:
        average = decay * average + (1 - decay) * w
        averages.append(average)
    final = trainer.weight_params[0].detach()
    if held_out:  # the start, then every check's average; the best of them is kept
        checks = [averages[s - 1] for s in range(phase.check_every, steps + 1, phase.check_every)]
        assert len(trainer.judged) == 1 + len(checks)
        for judged, expected in zip(trainer.judged[1:], checks):
            assert torch.allclose(judged, expected, atol=1e-6)
        best = min(trainer.judged, key=lambda w: float((w - 1).pow(2).sum()))
        assert torch.allclose(final, best, atol=1e-6)
    else:
        assert torch.allclose(final, averages[-1], atol=1e-6)
    # The average is steadier than the last step's weights, which the noisy gradients keep moving.
    assert float((final - 1).abs().max()) < float((weights[-1] - 1).abs().max())


class _MaskedTrainer(_QuadraticTrainer):
    """The quadratic fake with a hard mask on weight 'w', under the name ``name`` among its trained weights; it
    records the transforms and the weights each forward pass sees."""

    def __init__(self, name: str) -> None:
        super().__init__(held_out=True)
        self.trained = {name: self.weight_params[0]}
        self.forwarded: list[tuple[set, torch.Tensor]] = []

    def loss(self, transforms):
        w = self.weight_params[0]
        self.forwarded.append((set(transforms), w.detach().clone()))
        return (transforms["w"](w) if "w" in transforms else w).sub(torch.tensor([1.0, -2.0, 3.0])).pow(2).sum()

    def validation_loss(self, transforms):
        w = self.weight_params[0]
        return float((transforms["w"](w) if "w" in transforms else w).sub(1).pow(2).sum())


def test_fine_tune_zeroes_pruned_weights_in_place_and_trains_the_kept_ones_as_under_the_mask() -> None:
    """A trained weight's hard mask is applied once to the weight and after every step, never in the forward pass
    (where it held a masked copy of the weight for the backward pass); the kept weights end exactly as when the
    mask multiplies them in every forward pass (the same fake, the weight under another name)."""
    from smart_onnx.search.phases import FinetunePhase

    keep = torch.tensor([1.0, 0.0, 1.0])
    runs = {}
    for name in ("w", "not-masked-by-name"):
        trainer = _MaskedTrainer(name)
        phase = FinetunePhase(trainer, {"w": lambda w: w * keep}, 60, SearchConfig(lr=0.2, patience=1000), History(),
                              TrainingLog(), None, None)
        assert phase.run() is None
        runs[name] = trainer
    zeroed, multiplied = runs["w"], runs["not-masked-by-name"]
    assert len(zeroed.forwarded) == len(multiplied.forwarded) == 60
    assert all("w" not in names and float(w[1]) == 0.0 for names, w in zeroed.forwarded)
    assert all("w" in names for names, _ in multiplied.forwarded)
    final = zeroed.weight_params[0].detach()
    assert float(final[1]) == 0.0
    assert torch.equal(final[keep.bool()], multiplied.weight_params[0].detach()[keep.bool()])
    assert float((final[0] - 1).abs()) < 0.5  # it trained


def _toy_search(config: SearchConfig, deadline: float | None = None, soft_mask=None, before_loss=None):
    """A SearchPhase over six scores, one weight each: the smallest phase that runs real steps. ``soft_mask``
    (tau, scores) -> mask replaces the sigmoid; ``before_loss`` (weights, scores) is called by each forward pass."""
    from smart_onnx.search.phases import SearchPhase
    from smart_onnx.search.precision import Precision

    scores = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 6))

    class _Space:
        masks_activations = False

        def transforms(self, mask):
            return {"w": mask}

    class _Trainer:
        weight_params = [torch.nn.Parameter(torch.full((6,), 0.5))]
        precision = Precision("cpu")

        def loss(self, transforms, use_features=True):
            if before_loss is not None:
                before_loss(self.weight_params, scores)
            return ((self.weight_params[0] * transforms["w"] - 1) ** 2).sum()

    mask_of = soft_mask or (lambda tau, s: torch.sigmoid(s / tau))
    return SearchPhase(_Trainer(), [scores], lambda tau: mask_of(tau, scores), _Space(),
                       lambda m: float((m < 0.5).float().mean()), config, History(), TrainingLog(), None, deadline)


def test_a_step_leaves_no_gradient_or_soft_mask_to_the_next_forward_pass() -> None:
    """The forward pass is a step's memory peak: the last step's gradients (a copy of every weight and score) and
    its soft mask (one value per weight in N:M mode) are gone before it starts."""
    import weakref

    masks: list[weakref.ref] = []
    seen: list[tuple[bool, ...]] = []
    held: list[torch.Tensor] = []

    def before_loss(weights, scores):
        held[:] = [scores]
        seen.append((*(p.grad is None for p in (*weights, scores)), *(m() is None for m in masks)))

    def soft_mask(tau, scores):
        mask = torch.sigmoid(scores / tau)
        masks.append(weakref.ref(mask))
        return mask

    phase = _toy_search(SearchConfig(steps=3), soft_mask=soft_mask, before_loss=before_loss)
    assert phase.run() is None
    # Each forward pass: no gradient held, and every mask but the one just made for this step gone.
    assert [all(flags[:2]) and all(flags[2:-1]) and not flags[-1] for flags in seen] == [True] * 3
    assert held[0].grad is None and all(m() is None for m in masks)
    assert phase.history.sparsity == [0.5] * 3


@pytest.mark.parametrize("slow_from", [3, 40])
def test_a_search_that_falls_behind_its_deadline_ends_annealed_instead_of_cut(monkeypatch, slow_from) -> None:
    """Steps take 1 s, then 3 s from step ``slow_from`` on (the machine got busy after the timed steps): the search
    shortens its plan on every step it falls behind, so it still ends at tau_end before the deadline."""
    import smart_onnx.search.phases as phases

    now = [0.0]
    ticks = iter(range(10_000))

    def clock() -> float:  # called once at the start, then once a step
        step = next(ticks)
        now[0] += 0.0 if step == 0 else (1.0 if step < slow_from else 3.0)
        return now[0]

    monkeypatch.setattr(phases, "clock", clock)
    config = SearchConfig(steps=100, tau_start=1.0, tau_end=0.01)
    phase = _toy_search(config, deadline=100.5)
    assert phase.run() is None and phase.training.search_stopped is None
    assert phase.history.tau[-1] == pytest.approx(0.01) and now[0] <= 100.5
    assert phase.total == len(phase.history.tau) < 100
    assert phase.training.search_replanned.startswith(f"100 -> {phase.total} search steps")
    taus = phase.history.tau
    assert all(b <= a for a, b in zip(taus, taus[1:]))  # a re-plan decays on from where tau was
    # One slow step in a steady run with time to spare is time lost, not a new pace: no re-plan.
    now[0], ticks = 0.0, iter([0] + [1] * 30 + [999] + [1] * 200)
    steady = _toy_search(config, deadline=1000.0)

    def hiccup() -> float:
        now[0] += {0: 0.0, 1: 5.0, 999: 400.0}[next(ticks)]
        return now[0]

    monkeypatch.setattr(phases, "clock", hiccup)
    assert steady.run() is None and steady.total == 100 and steady.training.search_replanned is None


def test_each_weight_tensor_steps_by_the_learning_rate_times_its_rms() -> None:
    from smart_onnx.search.phases import WEIGHT_RMS_FLOOR, weight_groups

    big, small, zeros = torch.full((4, 4), 2.0), torch.full((3,), -0.01), torch.zeros(5)
    groups = weight_groups([big, small, zeros], 1e-3)
    assert [g["params"][0] is w for g, w in zip(groups, (big, small, zeros))] == [True] * 3
    assert [g["lr"] for g in groups] == pytest.approx([2e-3, 1e-5, 1e-3 * WEIGHT_RMS_FLOOR])


def test_too_few_images_to_hold_out_judge_the_fine_tune_on_augmented_views() -> None:
    from smart_onnx.data.augment import augmented_views

    model = load_model("models/fashion_resnet.onnx")
    rng = np.random.default_rng(0)
    x = rng.random((40, *model.inputs[0].shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    views = augmented_views(data, ImageAugmenter(model.inputs, seed=3), batch_size=16)
    assert views.arrays[model.inputs[0].name].shape == x.shape and len(views) == 40
    assert not np.allclose(views.arrays[model.inputs[0].name], x)
    again = augmented_views(data, ImageAugmenter(model.inputs, seed=3), batch_size=16)
    assert np.array_equal(views.arrays[model.inputs[0].name], again.arrays[model.inputs[0].name])

    outcome = prune(model, data, None, PruneOptions(mode="block", latency=False, search=SearchConfig(
        sparsity=0.3, steps=2, finetune_steps=20, batch_size=16, time_budget=None)))
    training = outcome.report.training
    assert training.augment and training.validation_samples == 0
    assert training.early_stopping.startswith("on an augmented view of each calibration sample")
    assert len(outcome.report.history.validation_loss) >= 2


@pytest.mark.parametrize(("judged", "cut"), [("improving", True), ("worsening", False), ("not judged", False)])
def test_a_fine_tune_the_budget_ends_says_whether_it_still_improved(monkeypatch, judged: str, cut: bool) -> None:
    """Only a fine-tune whose last held-out check still improved asks for a longer budget (PruneReport.remedies)."""
    import smart_onnx.search.phases as phases

    ticks = iter(range(10**6))
    monkeypatch.setattr(phases, "clock", lambda: float(next(ticks)))  # one tick a step: the deadline at step 27
    trainer = _QuadraticTrainer(held_out=judged != "not judged")
    if judged == "worsening":
        losses = iter(range(100))
        trainer.validation_loss = lambda transforms: float(next(losses))
    training = TrainingLog()
    phase = phases.FinetunePhase(trainer, {}, 200, SearchConfig(lr=0.2, patience=1000), History(), training, None,
                                 deadline=25.0)
    stopped = phase.run()
    assert stopped == "time budget reached after 27 of 200 fine-tune steps"
    assert training.finetune_cut == (stopped if cut else None)
