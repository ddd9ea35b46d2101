"""Index maps: where the channels of a coupling group sit on one axis of one tensor.

A map takes *group channel indices* (integers in ``[0, group.channels)``) to
*positions* on a tensor axis. Maps are frozen dataclasses and compose with
:meth:`IndexMap.then` (the idea of Torch-Pruning's ``_HybridIndex``, as values):

* :class:`IdentityMap` -- channel ``c`` is position ``c`` (a conv's own output channels);
* :class:`OffsetMap` -- ``c -> c + offset`` (the second input of a channel ``Concat``);
* :class:`WindowMap` -- ``c -> (c - start) // step`` for ``c`` in ``range(start, stop, step)``;
  other channels have no position (one output of a channel ``Split``/``Slice``);
* :class:`RepeatMap` -- ``c -> [c * scale + k * step for k in range(count)]``: one channel
  becomes several positions (``Flatten`` of NCHW ``[C, H, W]`` into a Gemm: ``count = scale = H*W,
  step = 1``; flatten of NHWC ``[H, W, C]``: ``count = H*W, scale = 1, step = C``);
* :class:`ChainMap` -- several maps applied left to right.

Every map is injective in the sense that each position comes from at most one channel, so
composition is exact. A channel may have no position (partial maps) or many (``RepeatMap``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ChainMap", "IdentityMap", "IndexMap", "OffsetMap", "RepeatMap", "WindowMap", "as_indices"]


def as_indices(values: object) -> np.ndarray:
    """``values`` as a 1-D int64 array (a list, range, array or a single int)."""
    return np.atleast_1d(np.asarray(values, dtype=np.int64)).reshape(-1)


class IndexMap:
    """Base class: a map from group channel indices to positions on one tensor axis."""

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The map as (source, position) pairs.

        Args:
            channels: 1-D int array of group channel indices.

        Returns:
            ``(src, pos)``, two equally long int64 arrays: ``channels[src[j]]`` lands on
            position ``pos[j]``. Channels without a position do not appear; a channel
            with several positions appears several times.
        """
        raise NotImplementedError

    def __call__(self, channels: object) -> np.ndarray:
        """Sorted, unique positions of ``channels`` (array, list, range or int)."""
        return np.unique(self.pairs(as_indices(channels))[1])

    def counts(self, channels: object) -> np.ndarray:
        """Number of positions of each channel in ``channels`` (0 where it has none)."""
        idx = as_indices(channels)
        src, _ = self.pairs(idx)
        return np.bincount(src, minlength=len(idx)).astype(np.int64)

    def gather(self, channels: int, axis_size: int) -> np.ndarray:
        """For each position on the axis, the group channel it holds, or -1.

        This is the form a mask wants: ``mask_on_axis = where(g >= 0, p[g], 1)``.

        Args:
            channels: the group's channel count.
            axis_size: the axis length.
        """
        out = np.full(axis_size, -1, dtype=np.int64)
        src, pos = self.pairs(np.arange(channels, dtype=np.int64))
        inside = (pos >= 0) & (pos < axis_size)
        out[pos[inside]] = src[inside]
        return out

    def then(self, other: IndexMap) -> IndexMap:
        """``self`` followed by ``other`` (positions of ``self`` are the channels of ``other``)."""
        first = self.maps if isinstance(self, ChainMap) else (self,)
        second = other.maps if isinstance(other, ChainMap) else (other,)
        return _simplify(first + second)


@dataclass(frozen=True)
class IdentityMap(IndexMap):
    """Channel ``c`` is position ``c``."""

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(len(channels), dtype=np.int64), as_indices(channels)


@dataclass(frozen=True)
class OffsetMap(IndexMap):
    """Channel ``c`` is position ``c + offset``."""

    offset: int

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(len(channels), dtype=np.int64), as_indices(channels) + self.offset


@dataclass(frozen=True)
class WindowMap(IndexMap):
    """Channels in ``range(start, stop, step)`` go to ``(c - start) // step``; others vanish."""

    start: int
    stop: int
    step: int = 1

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = as_indices(channels)
        keep = (c >= self.start) & (c < self.stop) & ((c - self.start) % self.step == 0)
        src = np.nonzero(keep)[0].astype(np.int64)
        return src, (c[src] - self.start) // self.step


@dataclass(frozen=True)
class RepeatMap(IndexMap):
    """Channel ``c`` goes to ``c * scale + k * step`` for ``k`` in ``range(count)``."""

    count: int
    scale: int
    step: int = 1

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = as_indices(channels)
        k = np.arange(self.count, dtype=np.int64)
        pos = (c[:, None] * self.scale + k[None, :] * self.step).reshape(-1)
        src = np.repeat(np.arange(len(c), dtype=np.int64), self.count)
        return src, pos


@dataclass(frozen=True)
class ChainMap(IndexMap):
    """``maps[0]``, then ``maps[1]``, ... (build with :meth:`IndexMap.then`)."""

    maps: tuple[IndexMap, ...]

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        src = np.arange(len(channels), dtype=np.int64)
        pos = as_indices(channels)
        for m in self.maps:
            s, pos = m.pairs(pos)
            src = src[s]
        return src, pos


def _simplify(maps: tuple[IndexMap, ...]) -> IndexMap:
    """Drop identities and merge neighbouring offsets, so common chains stay short."""
    out: list[IndexMap] = []
    for m in maps:
        if isinstance(m, IdentityMap) or (isinstance(m, OffsetMap) and m.offset == 0):
            continue
        if out and isinstance(m, OffsetMap) and isinstance(out[-1], OffsetMap):
            out[-1] = OffsetMap(out[-1].offset + m.offset)
            if out[-1].offset == 0:
                out.pop()
            continue
        out.append(m)
    if not out:
        return IdentityMap()
    return out[0] if len(out) == 1 else ChainMap(tuple(out))
