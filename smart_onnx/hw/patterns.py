"""Which structure the zeros of a weight have: aligned blocks, N:M groups, or none (numpy only).

The rules mirror the search's units so that what ``prune`` writes is what ``check``
accepts: blocks are aligned at 0 along every canonical axis, a block dim larger than the
weight dim is clipped to it, and edge blocks of non-divisible dims are partial
(:class:`smart_onnx.search.BlockUnits`); N:M groups are runs of M along the input axis,
and a ragged tail of ``len % M`` weights belongs to no group
(:class:`smart_onnx.search.NMUnits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["nm_problems", "stray_zeros"]


def stray_zeros(zero: np.ndarray, block: Sequence[int], ignore: np.ndarray | None = None) -> int:
    """Zeros of ``zero`` that do not lie in an all-zero aligned block.

    Args:
        zero: bool array, True where a weight is zero, in canonical ``O x I x k...`` order.
        block: block extent per axis, same rank (clipped to the array's dims).
        ignore: optional bool array like ``zero``: zeros not to count as stray (they still
            count towards whole blocks).

    Returns:
        How many zeros lie in blocks that also hold a non-zero (0 = the zeros are a union
        of whole blocks).
    """
    shape = zero.shape
    block = tuple(min(int(b), d) for b, d in zip(block, shape))
    grid = tuple(-(-d // b) for d, b in zip(shape, block))
    # Padding counts as zero, so a partial edge block is judged on its real elements only.
    padded = np.ones(tuple(g * b for g, b in zip(grid, block)), dtype=bool)
    padded[tuple(slice(0, d) for d in shape)] = zero
    interleaved = [x for g, b in zip(grid, block) for x in (g, b)]
    whole = padded.reshape(interleaved).all(axis=tuple(range(1, 2 * len(shape), 2)))
    expanded = np.broadcast_to(whole.reshape([x for g in grid for x in (g, 1)]), interleaved)
    whole = expanded.reshape(padded.shape)[tuple(slice(0, d) for d in shape)]
    stray = zero & ~whole
    return int(np.count_nonzero(stray if ignore is None else stray & ~ignore))


def nm_problems(
    zero: np.ndarray, axis: int, n: int, m: int, ignore: np.ndarray | None = None
) -> tuple[int, int, int]:
    """How far the zeros of a weight are from an N:M pattern along ``axis``.

    Every full group of ``m`` consecutive weights must hold at least ``m - n`` zeros. The
    ragged tail (``len % m`` weights per line) is computed dense by N:M hardware, so a
    zero there is sparsity the hardware cannot use and counts as a problem.

    Args:
        zero: bool array, True where a weight is zero (the initializer's own axis order).
        axis: the input-channel axis.
        n: non-zeros allowed per group.
        m: group size.
        ignore: optional bool array like ``zero``: tail zeros not to count.

    Returns:
        ``(groups with too many non-zeros, number of full groups, zeros in the ragged tail)``.
    """
    moved = np.moveaxis(zero, axis, -1)
    full = moved.shape[-1] // m * m
    groups = moved[..., :full].reshape(-1, m)
    too_dense = int(np.count_nonzero(groups.sum(axis=1) < m - n))
    tail = moved[..., full:]
    if ignore is not None:
        tail = tail & ~np.moveaxis(ignore, axis, -1)[..., full:]
    return too_dense, int(groups.shape[0]), int(np.count_nonzero(tail))
