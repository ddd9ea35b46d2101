"""round_channels: nearest allowed count, ties up, clamped to [minimum, total]."""

from __future__ import annotations

import pytest

from smart_onnx.errors import ConstraintError
from smart_onnx.rewrite.align import round_channels


@pytest.mark.parametrize(
    ("count", "multiple", "minimum", "total", "expected"),
    [
        (12, 8, 1, 64, 16),  # tie between 8 and 16: up
        (11, 8, 1, 64, 8),  # nearest down
        (13, 8, 1, 64, 16),  # nearest up
        (0, 8, 1, 64, 8),  # never zero
        (64, 8, 1, 64, 64),  # all kept
        (60, 8, 1, 64, 64),  # tie with total
        (29, 8, 1, 30, 30),  # total is allowed although not aligned
        (27, 8, 1, 30, 30),  # tie between 24 and total: up
        (26, 8, 1, 30, 24),
        (5, 8, 1, 6, 6),  # no multiple fits: total
        (3, 8, 20, 64, 24),  # minimum rounded up to alignment
        (3, 8, 20, 10, 10),  # minimum above total: total
        (3, 1, 1, 10, 3),  # no alignment: unchanged
        (0, 1, 1, 10, 1),
        (2, 1, 4, 10, 4),
        (7, 16, 1, 7, 7),
    ],
)
def test_rounding(count: int, multiple: int, minimum: int, total: int, expected: int) -> None:
    assert round_channels(count, multiple=multiple, minimum=minimum, total=total) == expected


@pytest.mark.parametrize("total", [1, 7, 30, 64, 100])
@pytest.mark.parametrize("multiple", [1, 4, 8, 16])
def test_result_is_always_allowed(total: int, multiple: int) -> None:
    for count in range(total + 1):
        kept = round_channels(count, multiple=multiple, minimum=2, total=total)
        assert 1 <= kept <= total
        assert kept == total or (kept % multiple == 0 and kept >= 2)


@pytest.mark.parametrize(
    ("count", "multiple", "minimum", "total"),
    [(-1, 8, 1, 64), (65, 8, 1, 64), (4, 0, 1, 64), (4, 8, 0, 64), (0, 8, 1, 0)],
)
def test_bad_arguments_are_refused(count: int, multiple: int, minimum: int, total: int) -> None:
    with pytest.raises(ConstraintError):
        round_channels(count, multiple=multiple, minimum=minimum, total=total)
