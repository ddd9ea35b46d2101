"""Pruning units: block grids, N:M groups and channel units map masks back onto elements."""

from __future__ import annotations

import math

import pytest
import torch

from smart_onnx.errors import InternalError
from smart_onnx.search.soft_topk import hard_topk_grouped
from smart_onnx.search.units import BlockUnits, ChannelTarget, ChannelUnits, NMUnits

BLOCK_CASES = [
    ((32, 16, 3, 3), (16, 8, 1, 1)),  # divisible, the paper's block
    ((33, 20, 3, 3), (16, 8, 1, 1)),  # partial edge blocks on two axes
    ((5, 7, 3, 3), (2, 4, 2, 1)),  # partial on three axes
    ((10, 6), (4, 4)),
    ((3, 2), (16, 8)),  # block larger than the tensor: clipped
    ((7,), (3,)),
]


@pytest.mark.parametrize(("shape", "block"), BLOCK_CASES)
def test_block_costs_count_every_element_once(shape: tuple[int, ...], block: tuple[int, ...]) -> None:
    units = BlockUnits(shape, block)
    costs = units.costs()
    assert costs.shape == (units.num_units,)
    assert units.num_units == math.prod(-(-d // min(b, d)) for d, b in zip(shape, block))
    assert float(costs.sum()) == math.prod(shape)
    assert torch.equal(units.reduce(torch.ones(shape, dtype=torch.float64)), costs)


@pytest.mark.parametrize(("shape", "block"), BLOCK_CASES)
def test_block_expand_ones_and_single_zero(shape: tuple[int, ...], block: tuple[int, ...]) -> None:
    units = BlockUnits(shape, block)
    assert torch.equal(units.expand(torch.ones(units.num_units)), torch.ones(shape))
    last = units.num_units - 1  # the corner block: partial wherever the shape is not divisible
    for u in {0, units.num_units // 2, last}:
        p = torch.ones(units.num_units)
        p[u] = 0
        mask = units.expand(p)
        pos = torch.unravel_index(torch.tensor(u), units.grid_shape)
        expected = torch.ones(shape)
        expected[tuple(slice(int(i) * b, (int(i) + 1) * b) for i, b in zip(pos, units.block_shape))] = 0
        assert torch.equal(mask, expected)
        assert float((mask == 0).sum()) == float(units.costs()[u])


def test_block_expand_matches_reduce_and_passes_gradient() -> None:
    units = BlockUnits((33, 20, 3, 3), (16, 8, 1, 1))
    w = torch.randn(33, 20, 3, 3, dtype=torch.float64)
    p = torch.rand(units.num_units, dtype=torch.float64, requires_grad=True)
    (w * units.expand(p)).sum().backward()
    torch.testing.assert_close(p.grad, units.reduce(w))
    assert torch.autograd.gradcheck(lambda q: units.expand(q).square().sum(), (p,))


def test_block_rejects_wrong_sizes() -> None:
    units = BlockUnits((8, 8), (4, 4))
    with pytest.raises(InternalError):
        units.expand(torch.ones(5))
    with pytest.raises(InternalError):
        BlockUnits((8, 8), (4,))


@pytest.mark.parametrize(("shape", "axis"), [((6, 8, 3, 3), 1), ((6, 10, 3, 3), 1), ((12, 6), 0), ((5, 3), 1)])
def test_nm_groups_are_consecutive_along_axis(shape: tuple[int, ...], axis: int) -> None:
    units = NMUnits(shape, 2, 4, axis)
    x = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    groups = units.to_groups(x)
    assert groups.shape == (units.num_groups, 4)
    stride = x.stride(axis)
    assert torch.equal(groups.diff(dim=1), torch.full((units.num_groups, 3), float(stride), dtype=torch.float64))
    # Round trip: the grouped part comes back in place, the ragged tail becomes 1 (dense).
    line = [-1 if a == axis else 1 for a in range(len(shape))]
    tail = torch.arange(shape[axis]).reshape(line) >= shape[axis] // 4 * 4
    assert torch.equal(units.expand(groups), torch.where(tail, torch.ones_like(x), x))
    assert units.dense_tail == shape[axis] % 4


def test_nm_hard_mask_keeps_n_of_every_m_and_passes_gradient() -> None:
    w = torch.randn(8, 10, 3, dtype=torch.float64)
    units = NMUnits(w.shape, 2, 4, axis=1)
    mask = units.expand(hard_topk_grouped(units.to_groups(w.abs()), 2).double())
    kept_per_group = mask.movedim(1, -1)[..., :8].reshape(8, 3, 2, 4).sum(-1)
    assert torch.equal(kept_per_group, torch.full((8, 3, 2), 2.0, dtype=torch.float64))
    assert bool((mask[:, 8:] == 1).all())
    p = torch.rand(units.num_groups, 4, dtype=torch.float64, requires_grad=True)
    (w * units.expand(p)).sum().backward()
    torch.testing.assert_close(p.grad, units.to_groups(w))


@pytest.mark.parametrize(("n", "m", "axis"), [(0, 4, 1), (5, 4, 1), (2, 4, 3)])
def test_nm_rejects_bad_patterns(n: int, m: int, axis: int) -> None:
    with pytest.raises(InternalError):
        NMUnits((4, 8, 3), n, m, axis)


def _channel_units() -> ChannelUnits:
    """Unit 0/1 cover conv0's output channels {0,1}/{2,3} and conv1's matching input channels."""
    return ChannelUnits(
        3,
        [
            ChannelTarget("conv0.w", (4, 3, 3, 3), 0, {0: [0, 1], 1: [2, 3]}),
            ChannelTarget("conv0.b", (4,), 0, {0: [0, 1], 1: [2, 3]}),
            ChannelTarget("conv1.w", (5, 4, 1, 1), 1, {0: [0, 1], 1: [2, 3]}),
            ChannelTarget("conv1.w", (5, 4, 1, 1), 0, {2: [4]}),
        ],
    )


def test_channel_expand_masks_each_tensor() -> None:
    units = _channel_units()
    masks = units.expand(torch.tensor([1.0, 0.0, 0.5]))
    assert masks["conv0.w"].shape == (4, 1, 1, 1)
    assert masks["conv0.b"].tolist() == [1.0, 1.0, 0.0, 0.0]
    conv1 = torch.ones(5, 4, 1, 1) * masks["conv1.w"]
    expected = torch.ones(5, 4, 1, 1)
    expected[:, 2:] = 0
    expected[4] *= 0.5
    assert torch.equal(conv1, expected)
    assert torch.equal(units.expand(torch.ones(3))["conv1.w"].expand(5, 4, 1, 1), torch.ones(5, 4, 1, 1))


def test_channel_costs_and_gradient() -> None:
    units = _channel_units()
    # unit 0: 2 * 27 (conv0.w) + 2 (bias) + 2 * 5 (conv1.w inputs); unit 2: one conv1 output row of 4.
    assert units.costs().tolist() == [66.0, 66.0, 4.0]
    w = torch.randn(5, 4, 1, 1, dtype=torch.float64)
    p = torch.rand(3, dtype=torch.float64, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    (w * units.expand(p)["conv1.w"]).sum().backward()
    rows = torch.cat([torch.ones(4, dtype=torch.float64), q[2:]])  # output channel 4 is unit 2
    (w * torch.outer(rows, q[[0, 0, 1, 1]]).reshape(5, 4, 1, 1)).sum().backward()
    torch.testing.assert_close(p.grad, q.grad)


def _brute_force_sums(units: ChannelUnits, p: torch.Tensor) -> dict[str, float]:
    shapes = {t.name: t.shape for t in units.targets}
    return {name: float(torch.broadcast_to(m, shapes[name]).sum()) for name, m in units.expand(p).items()}


def test_channel_sums_equal_the_sums_of_the_broadcast_masks() -> None:
    # conv2.w's input axis is split between two targets (a Concat of two groups feeding it).
    units = ChannelUnits(4, [*_channel_units().targets,
                             ChannelTarget("conv2.w", (6, 5, 3, 3), 1, {2: [4]}),
                             ChannelTarget("conv2.w", (6, 5, 3, 3), 1, {3: [0, 2]})])
    for p in (torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0.25, 0.5, 0.125, 0.75])):
        sums = units.sums(p.double())
        assert sums == _brute_force_sums(units, p.double())
    assert units.sums(torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))["conv2.w"] == 6 * 3 * 3 * 3


@pytest.mark.parametrize(
    "units",
    [{0: [0, 1], 1: [1]}, {0: [0, 0]}, {0: [4]}, {3: [0]}],
    ids=["overlap", "repeat", "index-range", "unit-range"],
)
def test_channel_rejects_bad_coverage(units: dict[int, list[int]]) -> None:
    with pytest.raises(InternalError):
        ChannelUnits(2, [ChannelTarget("w", (4, 2), 0, units)])
