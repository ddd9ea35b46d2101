"""The zoo under every built-in profile: masks hardened under the profile's constraints (random scores,
no training), exported by the rewriter, pass ``check``; the unpruned models pass with themselves as reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devkit.zoo import ARCHITECTURES
from smart_onnx.graph import analyze
from smart_onnx.hw import block_shapes, check_model, list_profiles, load_profile, nm_layers
from smart_onnx.model import OnnxModel, normalize, tensor_to_array
from smart_onnx.modes.block import block_constraints
from smart_onnx.modes.channel import align_channel_keep, channel_constraints
from smart_onnx.rewrite import apply_block_masks, apply_channel_masks
from smart_onnx.search import BlockSpace, ChannelSpace, GroupedRanking, NMSpace, SearchConfig, hard_topk

EXPORTER = "legacy17"


def _model(zoo_export, arch: str) -> OnnxModel:
    return normalize(zoo_export(arch, EXPORTER).proto)


def _scores(n: int) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _budget(space, costs: torch.Tensor, minimum: torch.Tensor | None, fraction: float) -> float:
    """``fraction`` of the cost, or more where tiny layers' minimums need it (each may overshoot by one unit)."""
    need = 0.0
    for g in range(len(space.group_names)):
        mine = costs[space.unit_group == g]
        need += min(float(mine.sum()), (float(minimum[g]) if minimum is not None else 0.0) + float(mine.max()))
    return max(fraction * float(costs.sum()), need)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_unpruned_zoo_complies_given_itself_as_reference(zoo_export, arch: str) -> None:
    model = _model(zoo_export, arch)
    for profile in list_profiles():
        report = check_model(model, profile, reference=model)
        assert report.passed, (profile.name, report.violations)
        assert all(lay.pattern == "dense" for lay in report.layers)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_block_mask_under_npu_block_passes_check(zoo_export, arch: str) -> None:
    profile, model = load_profile("npu-block"), _model(zoo_export, arch)
    analysis = analyze(model)
    shapes = block_shapes(profile, analysis)
    space = BlockSpace([lay for lay in analysis.layers if lay.name in shapes], shapes)
    c = block_constraints(profile, space, analysis)
    costs = space.costs("params")
    keep = hard_topk(_scores(space.num_units), costs, _budget(space, costs, c.group_min_keep, 0.4), keep=c.keep,
                     group=space.unit_group, group_min_keep=c.group_min_keep)
    pruned = apply_block_masks(model, space.export(keep), sparse_format="dense")
    report = check_model(pruned, profile, reference=model)
    assert report.passed, report.violations
    assert any(lay.pattern.startswith("block") for lay in report.layers)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_channel_mask_under_npu_channel_passes_check(zoo_export, arch: str) -> None:
    profile, model = load_profile("npu-channel"), _model(zoo_export, arch)
    analysis = analyze(model)
    space = ChannelSpace(analysis, analysis.groups,
                         {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer})
    if space.num_units == 0:
        pytest.skip(f"{arch} has no prunable channel group")
    c = channel_constraints(profile, space)
    costs, scores = space.costs("params"), _scores(space.num_units)
    keep = hard_topk(scores, costs, _budget(space, costs, c.group_min_keep, 0.6), group=space.unit_group,
                     group_min_keep=c.group_min_keep)
    keep = align_channel_keep(profile, space, keep, scores)
    pruned = apply_channel_masks(model, analysis, space.export(keep))
    report = check_model(pruned, profile, reference=model)
    assert report.passed, report.violations


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_nm_mask_under_npu_2to4_passes_check(zoo_export, arch: str) -> None:
    profile, model = load_profile("npu-2to4"), _model(zoo_export, arch)
    (n, m), layers = nm_layers(profile, analyze(model))
    space = NMSpace(layers, n, m)
    weights = {t.name: torch.from_numpy(np.array(tensor_to_array(t))) for t in model.graph.initializer}
    keep = GroupedRanking(space).harden(space.magnitude_scores(weights), SearchConfig(sparsity=None))
    pruned = apply_block_masks(model, space.export(keep), sparse_format="dense")
    report = check_model(pruned, profile, reference=model)
    assert report.passed, report.violations
    assert any(lay.pattern == "2:4" for lay in report.layers) == bool(space.layers)
