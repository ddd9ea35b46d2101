"""The pruning-mode protocol: one resolution step, one hard-mask type, the registry matches the profile format."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from devkit.zoo import export, resnet_like
from smart_onnx.data import Dataset, dataset_from_arrays
from smart_onnx.errors import ConstraintError, InternalError
from smart_onnx.executor import Executor
from smart_onnx.graph import analyze
from smart_onnx.hw import DEFAULT_PROFILE, RULES, builtin_names, load_profile, profile_from_dict
from smart_onnx.hw.constraints import MODES as PROFILE_MODES
from smart_onnx.model import OnnxModel, normalize
from smart_onnx.modes import (
    DEFAULT_BLOCK,
    DEFAULT_NM,
    MODES,
    ModeRequest,
    build_mode,
    check_request,
    mode_builder,
    register_mode,
    registered_modes,
)
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.report import PruneReport
from smart_onnx.search import GroupedRanking, NMSpace, SearchConfig, achieved_sparsity, run_search
from smart_onnx.search.soft_topk import soft_topk_grouped
from tests.hw import INPUT, small_cnn

REQUESTS = {
    "block": ModeRequest(mode="block", block=(4, 4, 1, 1), sparsity=0.5),
    "channel": ModeRequest(mode="channel", sparsity=0.5),
    "nm": ModeRequest(mode="nm"),
}


def _mode(name: str, **kw):
    model = small_cnn()
    request = ModeRequest(**{**REQUESTS[name].__dict__, **kw})
    return model, build_mode(request, analyze(model, INPUT), model)


def test_registered_modes_are_the_ones_a_profile_can_name() -> None:
    assert set(MODES) == set(PROFILE_MODES)


def test_the_defaults_without_a_target_are_the_clis_default_targets_patterns() -> None:
    """prune() without a target and the CLI (--target npu-block) block the same way; nm as npu-2to4 does."""
    default = load_profile(DEFAULT_PROFILE)
    assert default.mode == "block" and default.rule_for("Conv").blocks[0] == DEFAULT_BLOCK
    assert load_profile("npu-2to4").rule_for("Conv").nm[0] == DEFAULT_NM


@pytest.mark.parametrize("name", MODES)
def test_every_mode_states_rules_the_checker_knows(name: str) -> None:
    _, mode = _mode(name)
    assert mode.name == name and mode.checker_rules and set(mode.checker_rules) <= set(RULES)
    assert mode.checker_rules == mode_builder(name).checker_rules


@pytest.fixture(scope="module")
def resnet_and_data() -> tuple[OnnxModel, Dataset]:
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((16, *example.shape[1:])).astype(np.float32)
    return model, dataset_from_arrays({model.inputs[0].name: x}, model.inputs)


@pytest.mark.parametrize("name", MODES)
def test_prune_judges_its_output_by_exactly_the_rules_its_mode_declares(name: str, resnet_and_data) -> None:
    """A channel-pruned model is not judged by the block-pattern rules, nor a block-pruned one by the channels'."""
    target = next(p for p in map(load_profile, (DEFAULT_PROFILE, *builtin_names())) if name in p.modes)
    search = SearchConfig(sparsity=None if name == "nm" else 0.3, steps=2, finetune_steps=1, batch_size=8,
                          time_budget=None)
    options = PruneOptions(mode=name, target=target, search=search, latency=False)
    report = prune(*resnet_and_data, None, options).report
    declared = mode_builder(name).checker_rules
    assert report.check.rules == declared
    assert {v.rule for v in report.check.violations} | {n.rule for n in report.check.not_judged} <= set(declared)
    assert PruneReport.from_json(report.to_json()).check.rules == declared


@pytest.mark.parametrize(("rules", "match"), [(("pattern", "diagonal"), "declares \\['diagonal'\\]"),
                                              ((), "declares none")])
def test_a_mode_is_refused_at_registration_unless_the_checker_has_its_rules(rules: tuple[str, ...],
                                                                             match: str) -> None:
    class Diagonal:
        checker_rules = rules

    with pytest.raises(InternalError, match=match):
        register_mode("diagonal", Diagonal)  # type: ignore[arg-type]
    assert "diagonal" not in registered_modes()


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_the_hard_mask_is_one_flat_bool_tensor_in_every_mode(name: str, method: str) -> None:
    model, mode = _mode(name)
    weights = dict(Executor(model).weights.named_weights())
    keep = mode.ranking.fixed_mask(weights, SearchConfig(sparsity=mode.sparsity, method=method))
    assert keep.dtype == torch.bool and keep.shape == (mode.space.num_units,)
    assert set(mode.space.transforms(keep.float())) <= {t.name for t in model.graph.initializer}
    assert mode.sparsity_summary(keep).achieved_params >= mode.requested - 1e-9
    pruned = mode.rewrite(model, keep, sparse_format="dense")
    assert pruned.num_weights() <= model.num_weights()


def test_nm_flat_mask_is_each_layers_groups_in_order() -> None:
    model = small_cnn()
    space = NMSpace(analyze(model, INPUT).layers, 2, 4)
    flat = torch.arange(space.num_units, dtype=torch.float32)
    views = space.per_layer(flat)
    assert [tuple(v.shape) for v in views] == [(u.num_groups, 4) for _, u in space.layers]
    assert torch.equal(torch.cat([v.reshape(-1) for v in views]), flat)
    keep = torch.zeros(space.num_units, dtype=torch.bool)
    keep[::2] = True  # the first and third of every 4
    assert achieved_sparsity(space, keep, "params") == pytest.approx(space.sparsity)


def test_nm_soft_mask_ranks_all_layers_in_one_call_as_each_layer_alone() -> None:
    """The N:M soft mask is one soft top-k over every layer's groups at once: the same values and score gradients
    as one call per layer on its own slice, concatenated (what it was), to float rounding."""
    model = small_cnn()
    space = NMSpace(analyze(model, INPUT).layers, 2, 4)
    mask = GroupedRanking(space).soft_mask(torch.zeros(space.num_units), SearchConfig(sparsity=None), "cpu").mask
    gen = torch.Generator().manual_seed(5)
    initial = torch.randn(space.num_units, generator=gen)
    grad_p = torch.randn(space.num_units, generator=gen)
    ends = np.cumsum([units.num_units for _, units in space.layers]).tolist()
    for tau in (1.0, 0.05):
        lean, plain = initial.clone().requires_grad_(), initial.clone().requires_grad_()
        p = mask(lean, tau)
        p.backward(grad_p)
        q = torch.cat([soft_topk_grouped(plain[a:b].view(-1, 4), 2, tau).reshape(-1)
                       for a, b in zip([0, *ends[:-1]], ends)])
        q.backward(grad_p)
        torch.testing.assert_close(p, q, rtol=2e-7, atol=1e-9)
        torch.testing.assert_close(lean.grad, plain.grad, rtol=2e-7, atol=1e-9)


def test_nm_per_layer_views_pass_gradients_as_slices_do() -> None:
    model = small_cnn()
    space = NMSpace(analyze(model, INPUT).layers, 2, 4)
    weights = torch.randn(space.num_units, generator=torch.Generator().manual_seed(6))
    split, sliced = torch.ones(space.num_units, requires_grad=True), torch.ones(space.num_units, requires_grad=True)
    sum(((v * w) ** 2).sum() for v, w in zip(space.per_layer(split), space.per_layer(weights))).backward()
    starts = [0, *np.cumsum([units.num_units for _, units in space.layers]).tolist()]
    sum(((sliced[a:b] * weights[a:b]) ** 2).sum() for a, b in zip(starts, starts[1:])).backward()
    assert torch.equal(split.grad, sliced.grad)


@pytest.mark.parametrize(("request_", "match"), [
    (ModeRequest(mode="diagonal", sparsity=0.5), "unknown mode 'diagonal'"),
    (ModeRequest(mode="block"), "`sparsity` is required in block mode"),
    (ModeRequest(mode="channel"), "`sparsity` is required in channel mode"),
    (ModeRequest(mode="block", target=load_profile("npu-channel"), sparsity=0.5), "allows no block pattern"),
])
def test_requests_refused_before_any_model_work(request_: ModeRequest, match: str) -> None:
    with pytest.raises(ConstraintError, match=match):
        check_request(request_)


def test_the_target_picks_the_mode_and_its_pattern() -> None:
    assert check_request(ModeRequest(target=load_profile("npu-2to4"))) == "nm"
    assert check_request(ModeRequest(sparsity=0.5)) == "block"
    _, mode = _mode("nm", mode=None, target=load_profile("npu-2to4"))
    assert mode.pattern() == {"block": None, "nm": [2, 4]} and mode.sparsity == 0.5
    with pytest.raises(ConstraintError, match="contradicts"):
        _mode("nm", sparsity=0.3)
    with pytest.raises(ConstraintError, match="not allowed by target"):
        _mode("block", target=load_profile("npu-block"), block=(3, 3, 1, 1))


@pytest.mark.parametrize("name", MODES)
def test_run_search_returns_a_mask_that_meets_the_sparsity_and_trained_weights(name: str) -> None:
    model, mode = _mode(name)
    data = Dataset({"x": np.random.default_rng(0).standard_normal((16, 8, 6, 6)).astype(np.float32)})
    config = SearchConfig(sparsity=mode.sparsity, steps=3, finetune_steps=2, batch_size=8, time_budget=None)
    result = run_search(Executor(model), mode.ranking, data, config)
    assert result.keep.dtype == torch.bool and result.keep.shape == (mode.space.num_units,)
    assert mode.sparsity_summary(result.keep).achieved_params >= mode.requested - 1e-9
    assert len(result.history.loss) == 3 and len(result.history.finetune_loss) <= 2
    assert set(result.weights) >= {layer.weight for layer in mode.space.scored_layers}
    assert (result.plan.steps, result.plan.finetune_steps) == (3, 2)


def test_the_refit_re_chooses_blocks_at_the_same_sparsity_and_the_weights_follow_the_new_mask() -> None:
    model, mode = _mode("block", block=(4, 4, 1, 1))
    data = Dataset({"x": np.random.default_rng(0).standard_normal((16, 8, 6, 6)).astype(np.float32)})
    config = SearchConfig(sparsity=mode.sparsity, steps=3, finetune_steps=2, batch_size=8, time_budget=None)
    plain = run_search(Executor(model), mode.ranking, data, dataclasses.replace(config, refit_reselect=False))
    chosen = run_search(Executor(model), mode.ranking, data, config)
    moved = chosen.training.refit.units_moved
    assert plain.training.refit.units_moved == 0 and moved > 0
    # the search is seeded alike: the masks differ by the units the refit moved, as many kept as pruned
    assert int((chosen.keep & ~plain.keep).sum()) == moved == int((plain.keep & ~chosen.keep).sum())
    assert mode.sparsity_summary(chosen.keep) == mode.sparsity_summary(plain.keep)
    for weight, mask in mode.space.transforms(chosen.keep.float()).items():
        value = torch.from_numpy(chosen.weights[weight])
        assert bool((value[mask(torch.ones_like(value)) == 0] == 0).all())


@pytest.mark.parametrize("name", ["block", "channel"])
def test_a_global_ranking_without_a_sparsity_is_refused_by_name_as_prune_refuses_it(name: str) -> None:
    """SearchConfig's default sparsity is the CLI's (None): block and channel mode refuse it in the library too."""
    assert SearchConfig().sparsity is None
    model, mode = _mode(name)
    data = Dataset({"x": np.random.default_rng(0).standard_normal((8, 8, 6, 6)).astype(np.float32)})
    with pytest.raises(ConstraintError, match="`sparsity` is required") as info:
        run_search(Executor(model), mode.ranking, data, SearchConfig(steps=1, finetune_steps=0))
    assert info.value.parameters == ("sparsity",)
    with pytest.raises(ConstraintError, match=f"`sparsity` is required in {name} mode") as info:
        prune(model, data, None, PruneOptions(mode=name, latency=False))
    assert info.value.parameters == ("sparsity",)


# --------------------------------------------------------------------------- sparsity is of all prunable weights

# moments_layernorm_model returning its hidden states: its embedding and head sit in frozen channel groups
LN_SHAPES = {"x": (1, 12, 16)}


def _ln_mode(**request):
    from tests.transformers import moments_layernorm_model

    model = moments_layernorm_model(hidden_output=True)
    return model, build_mode(ModeRequest(**request), analyze(model, LN_SHAPES), model)


def _removed_of_all(model, pruned) -> float:
    """What the summary's weights line counts: zeros (or removed weights) of every prunable layer's weight."""
    layers = analyze(model, LN_SHAPES).layers
    before = sum(int(np.prod(lay.weight_shape)) for lay in layers)
    after = sum(int(np.count_nonzero(pruned.weight(lay.weight))) for lay in layers)
    return 1.0 - after / before


@pytest.mark.parametrize(("name", "extra", "unit"), [
    ("channel", {}, 2 * 64),  # one FFN channel: a column of ff1 and a row of ff2
    ("block", {"block": (8, 8), "target": "first-dense"}, 8 * 8),
])
def test_the_requested_sparsity_is_of_all_prunable_weights(name: str, extra: dict, unit: int) -> None:
    """Frozen groups (channel) or a dense-only layer (block) hold weights the search cannot reach: the mode aims
    its units higher, so that the model as a whole loses what was asked, within one unit."""
    if extra.get("target") == "first-dense":
        extra = {**extra, "target": profile_from_dict({"name": "first-dense", "dense_layers": ["first"],
                                                        "ops": {"MatMul": {"blocks": ["8x8"]}}})}
    model, mode = _ln_mode(mode=name, sparsity=0.5, **extra)
    total = 16 * 64 + 64 * 128 + 128 * 64 + 64 * 8
    assert mode.requested == 0.5 and mode.sparsity > 0.5 and mode.coverage.outside
    keep = mode.ranking.fixed_mask(dict(Executor(model).weights.named_weights()), SearchConfig(sparsity=mode.sparsity))
    summary = mode.sparsity_summary(keep)
    assert 0.5 - 1e-9 <= summary.achieved_params <= 0.5 + unit / total
    assert summary.searched is not None and summary.searched > summary.achieved_params
    assert _removed_of_all(model, mode.rewrite(model, keep, sparse_format="dense")) == pytest.approx(
        summary.achieved_params, abs=1e-9)


def test_a_request_frozen_groups_put_out_of_reach_is_refused_before_the_search() -> None:
    with pytest.raises(ConstraintError) as info:
        _ln_mode(mode="channel", sparsity=0.95)
    message = str(info.value)
    assert info.value.parameters == ("sparsity",) and "\n" not in message
    assert message.startswith("`sparsity` 0.95 is out of reach in channel mode: at most 90.7% of this model's "
                              "prunable weights can be removed (8.6% sit in 2 layers it cannot prune: "
                              "'embed.matmul': group 0 is frozen: its channels reach graph output 'hidden'")
    assert message.endswith("and 0.7% stay because every channel group keeps a channel); ask for at most 0.907")
    _, mode = _ln_mode(mode="channel", sparsity=0.907)  # the most it names is reachable
    assert mode.sparsity < 1.0


def test_nm_mode_states_its_share_of_all_prunable_weights() -> None:
    profile = profile_from_dict({"name": "last-dense", "dense_layers": ["last"], "ops": {"MatMul": {"nm": ["2:4"]}}})
    _, mode = _ln_mode(mode="nm", target=profile)
    share = 0.5 * (1 - 64 * 8 / (16 * 64 + 64 * 128 + 128 * 64 + 64 * 8))  # the head stays dense
    assert mode.requested == pytest.approx(share) and mode.sparsity == 0.5
    keep = mode.ranking.harden(torch.zeros(mode.space.num_units), SearchConfig(sparsity=mode.sparsity))
    assert mode.sparsity_summary(keep).achieved_params == pytest.approx(share)
    _ln_mode(mode="nm", target=profile, sparsity=round(share, 3))  # agreeing to the rounding a user types
    with pytest.raises(ConstraintError, match=r"N:M 2:4 prunes exactly 50% of each weight it covers, 48\.6% of this "
                                              r"model's prunable weights \('head\.matmul': .*\); `sparsity` 0\.5 "
                                              r"contradicts it"):
        _ln_mode(mode="nm", target=profile, sparsity=0.5)
