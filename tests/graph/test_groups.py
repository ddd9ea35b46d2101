"""Group records: keep-set validation, edit deltas, per-channel costs, self-tied channels."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import CouplingGroup, IdentityMap, ShapeEdit, WindowMap, analyze, check_keep
from tests.graph import GraphBuilder


def _group(frozen: str | None = None) -> CouplingGroup:
    return CouplingGroup(id=3, channels=4, roots=("c",), layers=("c",), slices=(), values=(), edits=(),
                         channel_params=(1, 1, 1, 1), channel_macs=(2, 2, 2, 2), frozen=frozen)


def test_check_keep_returns_sorted_unique_indices():
    assert check_keep(_group(), [3, 1, 1]).tolist() == [1, 3]


@pytest.mark.parametrize(
    ("keep", "frozen", "message"),
    [
        ([], None, "would keep no channel"),
        ([0, 4], None, "index 4 is out of range"),
        ([-1], None, "index -1 is out of range"),
        ([0, 1], "node 'n' (LRN) is not understood", "is frozen"),
    ],
)
def test_check_keep_rejects(keep, frozen, message):
    with pytest.raises(ConstraintError, match=message):
        check_keep(_group(frozen), keep)


def test_frozen_group_may_keep_everything():
    assert check_keep(_group("reason"), range(4)).tolist() == [0, 1, 2, 3]


def test_negative_slice_bound_rises_towards_zero():
    edit = ShapeEdit("s", "Slice", 1, None, 0, old_value=-4, per_channel=-1, index_map=WindowMap(4, 8))
    assert edit.old_value - edit.delta([5, 6, 1]) == -2


def test_group_costs_sum_per_channel():
    g = _group()
    assert (g.params, g.macs) == (4, 8)


def test_adding_two_halves_of_one_tensor_ties_channels_within_a_group():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    lo, hi = b.op("Split", [y, b.ints([4, 4])], outputs=2, axis=1)
    out = b.conv(b.op("Add", [lo, hi]), 4, 2, name="head")
    a = analyze(b.model({"x": (1, 3, 4, 4)}, [out]), {"x": (1, 3, 4, 4)})
    g = a.group_of("c1")
    assert g.channels == 4  # channel c and c + 4 of c1 must go together
    (w,) = [s for s in g.slices if s.tensor == "c1.w"]
    assert w.index_map([1]).tolist() == [1, 5]
    assert [e.delta([1]) for e in g.edits] == [1, 1]
    (head,) = [s for s in g.slices if s.tensor == "head.w"]
    assert head.index_map == IdentityMap()
    assert g.channel_params == (2 * (3 + 1) + 2,) * 4


def test_partly_tied_groups_have_uneven_costs():
    b = GraphBuilder()
    y = b.conv("x", 3, 8, name="c1")
    lo, hi = b.op("Split", [y, b.ints([4, 4])], outputs=2, axis=1)
    res = b.op("Add", [hi, b.conv(hi, 4, 4, name="c2")])
    out = b.conv(b.op("Concat", [lo, res], axis=1), 8, 2, name="head")
    a = analyze(b.model({"x": (1, 3, 4, 4)}, [out]), {"x": (1, 3, 4, 4)})
    g = a.group_of("c1")
    assert a.group_of("c2") is g and g.channels == 8
    params = np.asarray(g.channel_params)
    # channels 4..7 also hold a row of c2 (4 weights + bias) and a column of c2 (4 weights)
    assert (params[4:] - params[:4]).tolist() == [9] * 4
