"""Round kept-channel counts to what an NPU accelerates."""

from __future__ import annotations

from smart_onnx.errors import ConstraintError

__all__ = ["round_channels"]


def round_channels(count: int, *, multiple: int = 1, minimum: int = 1, total: int) -> int:
    """The kept-channel count nearest to ``count`` that the hardware accepts.

    Allowed results are the multiples of ``multiple`` that are at least ``minimum``
    and at most ``total``, plus ``total`` itself (an unpruned layer is always
    acceptable, aligned or not). The nearest allowed value wins; a tie goes to the
    larger one (keeping a channel is the safe side). When no multiple fits between
    ``minimum`` and ``total`` the answer is ``total``.

    Examples: ``round_channels(12, multiple=8, total=64) == 16`` (tie, up);
    ``round_channels(11, multiple=8, total=64) == 8``; ``round_channels(0, multiple=8,
    total=64) == 8``; ``round_channels(29, multiple=8, total=30) == 30``;
    ``round_channels(3, multiple=8, minimum=20, total=64) == 24``.

    Args:
        count: the kept count the search asked for, ``0 <= count <= total``.
        multiple: kept counts must be a multiple of this (1 = no alignment).
        minimum: keep at least this many channels (at least 1).
        total: channels the layer has.

    Raises:
        ConstraintError: a non-positive ``multiple``/``minimum``/``total`` or ``count`` outside ``[0, total]``.
    """
    if multiple < 1 or minimum < 1 or total < 1:
        raise ConstraintError(
            f"channel alignment needs positive multiple, minimum and total, got {multiple}, {minimum} and {total}"
        )
    if not 0 <= count <= total:
        raise ConstraintError(f"cannot keep {count} of {total} channels: the count must lie in [0, {total}]")
    lowest = -(-minimum // multiple) * multiple  # smallest aligned count >= minimum
    highest = total // multiple * multiple
    if lowest > highest:
        return total
    below = min(max(count // multiple * multiple, lowest), highest)
    candidates = {below, min(below + multiple, highest), total}
    # Nearest first, then the larger on a tie.
    return min(candidates, key=lambda c: (abs(c - count), -c))
