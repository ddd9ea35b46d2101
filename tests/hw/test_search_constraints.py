"""A profile as search constraints: units per layer, forced keeps, per-group minimums, channel alignment.

The end-to-end tests harden a mask under the constraints, export it with the rewriter and
check that the checker accepts the result: what the search obeys is what ``check`` demands.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, analyze
from smart_onnx.hw import (
    block_shape_for,
    block_shapes,
    check_model,
    dense_layer_names,
    dense_reasons,
    load_profile,
    mode_for,
    nm_for,
    nm_layers,
    profile_from_dict,
)
from smart_onnx.model import OnnxModel
from smart_onnx.modes.block import block_constraints
from smart_onnx.modes.channel import align_channel_keep, channel_constraints, min_kept_channels
from smart_onnx.rewrite import apply_block_masks, apply_channel_masks
from smart_onnx.search import BlockSpace, ChannelSpace, hard_topk
from tests.hw import INPUT, small_cnn

NPU_BLOCK = load_profile("npu-block")
NPU_CHANNEL = load_profile("npu-channel")
FIRST_DENSE = dataclasses.replace(NPU_BLOCK, name="npu-block-first-dense", dense_layers=("first",))


def _analysis(c1: int = 32) -> tuple[OnnxModel, Analysis]:
    model = small_cnn(c1)
    return model, analyze(model, INPUT)


def _channel_space(model: OnnxModel, analysis: Analysis) -> ChannelSpace:
    shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    return ChannelSpace(analysis, analysis.groups, shapes)


def _scores(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_block_shape_and_nm_per_op() -> None:
    _, a = _analysis()
    c1, _, fc = a.layers
    assert block_shape_for(NPU_BLOCK, c1) == (16, 8, 1, 1) and block_shape_for(NPU_BLOCK, fc) == (16, 8)
    assert block_shape_for(NPU_CHANNEL, c1) is None and nm_for(NPU_BLOCK, fc) is None
    gemm_only = profile_from_dict({"name": "t", "ops": {"default": {"blocks": ["4x4"]}, "Gemm": {"nm": ["1:4"]}}})
    assert block_shape_for(gemm_only, c1) == (4, 4, 1, 1) and block_shape_for(gemm_only, fc) is None
    assert nm_for(gemm_only, fc) == (1, 4) and nm_for(gemm_only, c1) is None


def test_dense_layers_first_last_patterns_and_tied_weights() -> None:
    _, a = _analysis()
    assert dense_layer_names(NPU_BLOCK, a) == set() and dense_layer_names(FIRST_DENSE, a) == {"c1"}
    profile = profile_from_dict({"name": "t", "dense_layers": ["last", "c?"], "dense_ops": []})
    assert dense_layer_names(profile, a) == {"c1", "c2", "fc"}
    twin = dataclasses.replace(a.layers[1], name="twin")  # another node reading c2's weight
    reasons = dense_reasons(profile_from_dict({"name": "t", "dense_layers": ["c2"]}), [*a.layers, twin])
    assert set(reasons) == {"c2", "twin"} and "shares weight 'c2.w'" in reasons["twin"]


def test_block_shapes_and_nm_layers_leave_dense_layers_out() -> None:
    _, a = _analysis()
    assert block_shapes(FIRST_DENSE, a) == {"c2": (16, 8, 1, 1), "fc": (16, 8)}
    assert block_shapes(NPU_BLOCK, a) == {"c1": (16, 8, 1, 1), "c2": (16, 8, 1, 1), "fc": (16, 8)}
    assert block_shapes(NPU_CHANNEL, a) == {}
    pattern, layers = nm_layers(load_profile("npu-2to4"), a)
    assert pattern == (2, 4) and [lay.name for lay in layers] == ["c1", "c2", "fc"]
    first_dense = profile_from_dict({"name": "t", "dense_layers": ["first"], "ops": {"Gemm": {"nm": ["2:4"]}}})
    assert [lay.name for lay in nm_layers(first_dense, a)[1]] == ["fc"]
    assert nm_layers(NPU_BLOCK, a) == (None, [])


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_block_constraints_force_dense_units_and_cap_layer_sparsity(kind: str) -> None:
    _, a = _analysis()
    space = BlockSpace(a.layers, (16, 8, 1, 1))  # built over every layer: the dense one gets forced keeps
    c = block_constraints(FIRST_DENSE, space, a, kind=kind)
    assert c.keep is not None and c.keep.tolist() == (space.unit_group == 0).tolist()
    costs = space.costs(kind)
    per_layer = torch.zeros(3, dtype=torch.float64).index_add_(0, space.unit_group, costs)
    torch.testing.assert_close(c.group_min_keep, 0.05 * per_layer)
    keep = hard_topk(_scores(space.num_units), costs, 0.07 * float(costs.sum()) + float(per_layer[0]),
                     keep=c.keep, group=space.unit_group, group_min_keep=c.group_min_keep)
    kept = torch.zeros(3, dtype=torch.float64).index_add_(0, space.unit_group, costs * keep)
    assert bool((kept >= 0.05 * per_layer - 1e-9).all()) and float(kept[0]) == float(per_layer[0])


def test_block_constraints_empty_when_nothing_is_forced() -> None:
    _, a = _analysis()
    profile = profile_from_dict({"name": "t", "ops": {"default": {"blocks": ["16x8"]}}})
    space = BlockSpace(a.layers, block_shapes(profile, a))
    c = block_constraints(profile, space)
    assert c.keep is None and c.group_min_keep is None


@pytest.mark.parametrize(
    ("align", "minimum", "channels", "expected"),
    [(16, 16, 32, 16), (16, 16, 10, 10), (8, 1, 32, 8), (16, 20, 40, 32), (16, 16, 24, 16), (8, 1, 5, 5)],
)
def test_min_kept_channels(align: int, minimum: int, channels: int, expected: int) -> None:
    profile = profile_from_dict({"name": "t", "channel_alignment": align, "min_channels": minimum})
    assert min_kept_channels(profile, channels) == expected


def test_channel_minimum_is_the_cost_of_the_most_expensive_channels() -> None:
    model, a = _analysis()
    space = _channel_space(model, a)
    assert [g.channels for g in space.groups] == [32, 32]  # fc's group feeds the output: frozen, no units
    c = channel_constraints(NPU_CHANNEL, space)
    assert c.keep is None
    costs = space.costs("params")
    for i in range(2):
        mine = torch.sort(costs[space.unit_group == i], descending=True).values
        assert float(c.group_min_keep[i]) == pytest.approx(float(mine[:16].sum()))
    keep = hard_topk(_scores(space.num_units), costs, float(c.group_min_keep.sum()),
                     group=space.unit_group, group_min_keep=c.group_min_keep)
    assert [int(keep[space.unit_group == i].sum()) for i in range(2)] == [16, 16]


def test_channel_minimum_takes_the_larger_of_sparsity_cap_and_channel_count() -> None:
    model, a = _analysis()
    space = _channel_space(model, a)
    capped = profile_from_dict({"name": "t", "max_layer_sparsity": 0.25, "min_channels": 2})
    c = channel_constraints(capped, space)
    totals = torch.zeros(2, dtype=torch.float64).index_add_(0, space.unit_group, space.costs("params"))
    torch.testing.assert_close(c.group_min_keep, 0.75 * totals)


@pytest.mark.parametrize(
    ("c1", "kept", "align", "expected"),
    [(32, 11, 8, 8), (32, 13, 8, 16), (32, 0, 8, 8), (32, 32, 8, 32), (12, 11, 8, 12), (12, 9, 8, 8)],
)
def test_align_channel_keep_rounds_each_group_by_score(c1: int, kept: int, align: int, expected: int) -> None:
    model, a = _analysis(c1)
    space = _channel_space(model, a)
    scores = _scores(space.num_units, seed=3)
    first = (space.unit_group == 0).nonzero().flatten()
    keep = torch.ones(space.num_units, dtype=torch.bool)
    keep[first] = False
    best = first[torch.sort(scores[first], descending=True, stable=True).indices]
    keep[best[:kept]] = True
    profile = profile_from_dict({"name": "t", "channel_alignment": align})
    out = align_channel_keep(profile, space, keep, scores)
    assert int(out[first].sum()) == expected
    assert set(best[: min(kept, expected)].tolist()) <= set(first[out[first]].tolist())  # best ones stay
    assert bool(out[space.unit_group == 1].all())  # an aligned group is untouched


def test_align_channel_keep_drops_the_worst_kept_not_the_best_pruned() -> None:
    model, a = _analysis()
    space = _channel_space(model, a)
    scores = torch.arange(space.num_units, dtype=torch.float64)  # higher index, higher score
    keep = torch.zeros(space.num_units, dtype=torch.bool)
    keep[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]] = True  # 10 low-scoring channels kept in group 0
    keep[32:] = True
    out = align_channel_keep(load_profile("npu-block"), space, keep, scores)
    assert out[:32].nonzero().flatten().tolist() == [2, 3, 4, 5, 6, 7, 8, 9]


def test_hardened_block_mask_under_npu_block_passes_check() -> None:
    model, a = _analysis()
    shapes = block_shapes(NPU_BLOCK, a)
    space = BlockSpace([lay for lay in a.layers if lay.name in shapes], shapes)
    c = block_constraints(NPU_BLOCK, space, a)
    costs = space.costs("params")
    keep = hard_topk(_scores(space.num_units), costs, 0.3 * float(costs.sum()), keep=c.keep,
                     group=space.unit_group, group_min_keep=c.group_min_keep)
    pruned = apply_block_masks(model, space.export(keep), sparse_format="dense")
    report = check_model(pruned, NPU_BLOCK, reference=model)
    assert report.passed, report.violations
    assert {lay.pattern for lay in report.layers} <= {"block 16x8x1x1", "block 16x8", "dense"}
    assert max(lay.sparsity for lay in report.layers) <= 0.95


def test_hardened_aligned_channel_mask_under_npu_channel_passes_check() -> None:
    model, a = _analysis()
    space = _channel_space(model, a)
    c = channel_constraints(NPU_CHANNEL, space)
    costs, scores = space.costs("params"), _scores(space.num_units)
    keep = hard_topk(scores, costs, 0.6 * float(costs.sum()), group=space.unit_group, group_min_keep=c.group_min_keep)
    keep = align_channel_keep(NPU_CHANNEL, space, keep, scores)
    pruned = apply_channel_masks(model, a, space.export(keep))
    report = check_model(pruned, NPU_CHANNEL, reference=model)
    assert report.passed, report.violations
    assert all(lay.out_channels % 16 == 0 for lay in report.layers[:2])
    assert sum(lay.out_channels for lay in report.layers[:2]) < 64  # channels were removed


def test_mode_for_defaults_to_the_profile_and_refuses_what_it_cannot_serve() -> None:
    assert mode_for(NPU_BLOCK) == "block" and mode_for(NPU_BLOCK, "channel") == "channel"
    assert mode_for(load_profile("npu-2to4")) == "nm"
    with pytest.raises(ConstraintError, match="target npu-channel allows no block pattern; its modes are channel"):
        mode_for(NPU_CHANNEL, "block")
