"""Index maps: each kind, composition, fitting explicit pairs back to a structured map."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smart_onnx.graph.index_map import (
    ChainMap,
    IdentityMap,
    OffsetMap,
    RepeatMap,
    TableMap,
    WindowMap,
    fit_map,
)


@pytest.mark.parametrize(
    ("index_map", "channels", "expected"),
    [
        (IdentityMap(), [2, 0], [0, 2]),
        (OffsetMap(4), [0, 3], [4, 7]),
        (WindowMap(3, 8), [0, 3, 7, 8], [0, 4]),
        (WindowMap(0, 8, 2), [0, 1, 2, 5, 6], [0, 1, 3]),
        (RepeatMap(3, 3), [1], [3, 4, 5]),  # NCHW flatten: channel 1 of a 3-pixel map
        (RepeatMap(3, 1, 4), [1], [1, 5, 9]),  # NHWC flatten: 4 channels, 3 pixels
        (TableMap((0, 0, 1), (5, 2, 7)), [0], [2, 5]),
    ],
)
def test_map_positions(index_map, channels, expected):
    assert index_map(channels).tolist() == expected


def test_then_composes_left_to_right_and_simplifies():
    m = OffsetMap(2).then(OffsetMap(3))
    assert m == OffsetMap(5)
    assert OffsetMap(2).then(OffsetMap(-2)) == IdentityMap()
    chain = WindowMap(4, 8).then(RepeatMap(2, 2)).then(OffsetMap(10))
    assert isinstance(chain, ChainMap)
    assert chain([5]).tolist() == [12, 13]
    assert chain([3]).size == 0


def test_gather_marks_positions_of_other_groups_with_minus_one():
    g = OffsetMap(2).gather(channels=3, axis_size=6)
    assert g.tolist() == [-1, -1, 0, 1, 2, -1]


def test_counts_per_channel():
    assert TableMap((0, 0, 2), (1, 2, 3)).counts([0, 1, 2]).tolist() == [2, 0, 1]


_STRUCTURED = st.one_of(
    st.builds(OffsetMap, st.integers(0, 20)),
    st.builds(lambda a, n: WindowMap(a, a + n), st.integers(0, 5), st.integers(1, 6)),
    st.builds(RepeatMap, st.integers(1, 5), st.integers(1, 6), st.integers(1, 4)),
)


@given(st.lists(_STRUCTURED, min_size=1, max_size=3), st.integers(1, 12))
def test_fit_map_reproduces_pairs(maps, channels):
    m = maps[0]
    for nxt in maps[1:]:
        m = m.then(nxt)
    src, dst = m.pairs(np.arange(channels))
    fitted = fit_map(src, dst, channels)
    for c in range(channels):
        assert fitted([c]).tolist() == m([c]).tolist()


@pytest.mark.parametrize(
    ("src", "dst", "channels", "expected"),
    [
        ([0, 1, 2], [0, 1, 2], 3, IdentityMap()),
        ([0, 1], [4, 5], 2, OffsetMap(4)),
        ([2, 3], [0, 1], 4, WindowMap(2, 4)),
        ([0, 0, 1, 1], [0, 1, 2, 3], 2, RepeatMap(2, 2, 1)),
    ],
)
def test_fit_map_prefers_structured_maps(src, dst, channels, expected):
    assert fit_map(src, dst, channels) == expected


def test_fit_map_falls_back_to_a_table():
    m = fit_map([0, 1, 1], [0, 1, 5], 2)
    assert isinstance(m, TableMap)
    assert m([1]).tolist() == [1, 5]
