"""ChannelSpace on the zoo: kept weight and MAC counts against brute-force sums of the element masks."""

from __future__ import annotations

import math

import pytest
import torch

from devkit.zoo import ARCHITECTURES
from smart_onnx.graph import analyze
from smart_onnx.model import iter_graphs, normalize
from smart_onnx.search import ChannelSpace


def _brute_force_kept(space: ChannelSpace, keep: torch.Tensor) -> tuple[float, float]:
    """Every accounted weight's element mask materialised and summed."""
    masks: dict[str, torch.Tensor] = {}
    for t in space._accounted.targets:
        line = torch.ones(t.shape[t.axis], dtype=torch.float64)
        for unit, indices in t.units.items():
            line[list(indices)] = float(keep[unit])
        view = [1] * len(t.shape)
        view[t.axis] = -1
        masks[t.name] = masks.get(t.name, torch.ones(t.shape, dtype=torch.float64)) * line.reshape(view)
    params = macs = 0.0
    for name, mask in masks.items():
        kept = float(mask.sum())
        layer = space._layer_of_weight.get(name)
        params += kept
        macs += (layer.macs or 0) * kept / math.prod(mask.shape) if layer else 0.0
    return params, macs


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_kept_matches_the_element_mask_sum_on_random_masks(zoo_export, arch: str) -> None:
    model = normalize(zoo_export(arch, "legacy17").proto)
    analysis = analyze(model)
    shapes = {t.name: tuple(int(d) for d in t.dims) for g in iter_graphs(model.graph) for t in g.initializer}
    space = ChannelSpace(analysis, analysis.groups, shapes)
    if space.num_units == 0:
        pytest.skip(f"{arch} has no prunable channel group")
    gen = torch.Generator().manual_seed(0)
    for fraction in (0.0, 0.3, 0.7, 1.0):
        keep = torch.rand(space.num_units, generator=gen) < fraction
        params, macs = space.kept(keep)
        expected = _brute_force_kept(space, keep)
        assert params == expected[0]
        assert macs == pytest.approx(expected[1], rel=1e-12)
    assert space.kept(torch.zeros(space.num_units, dtype=torch.bool))[0] < space.totals()[0]
