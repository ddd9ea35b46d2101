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
* :class:`ChainMap` -- several maps applied left to right;
* :class:`TableMap` -- explicit (channel, position) pairs, for what the others cannot say
  (e.g. two positions of one tensor that a residual ``Add`` ties to one channel).

:func:`fit_map` turns explicit pairs into the simplest of these that reproduces them.

Every map is injective in the sense that each position comes from at most one channel, so
composition is exact. A channel may have no position (partial maps) or many (``RepeatMap``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ChainMap", "IdentityMap", "IndexMap", "OffsetMap", "RepeatMap", "TableMap", "WindowMap", "as_indices", "fit_map",
]


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


@dataclass(frozen=True, repr=False)
class TableMap(IndexMap):
    """Channel ``src[j]`` goes to position ``dst[j]``, for every ``j``."""

    src: tuple[int, ...]
    dst: tuple[int, ...]

    def pairs(self, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = as_indices(channels)
        src = np.asarray(self.src, dtype=np.int64)
        dst = np.asarray(self.dst, dtype=np.int64)
        order = np.argsort(src, kind="stable")
        src, dst = src[order], dst[order]
        lo = np.searchsorted(src, c, side="left")
        hi = np.searchsorted(src, c, side="right")
        n = hi - lo
        which = np.repeat(np.arange(len(c), dtype=np.int64), n)
        offsets = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        return which, dst[np.repeat(lo, n) + offsets]

    def __repr__(self) -> str:
        return f"TableMap({len(set(self.src))} channels -> {len(self.dst)} positions)"


def fit_map(src: object, dst: object, channels: int) -> IndexMap:
    """The simplest map whose pairs over ``range(channels)`` are exactly ``zip(src, dst)``.

    Tries identity/offset/window/repeat shapes and falls back to :class:`TableMap`.
    """
    s, d = as_indices(src), as_indices(dst)
    order = np.lexsort((d, s))
    s, d = s[order], d[order]
    for candidate in _candidates(s, d, channels):
        cs, cd = candidate.pairs(np.arange(channels, dtype=np.int64))
        o = np.lexsort((cd, cs))
        if np.array_equal(cs[o], s) and np.array_equal(cd[o], d):
            return candidate
    return TableMap(tuple(int(x) for x in s), tuple(int(x) for x in d))


def _candidates(s: np.ndarray, d: np.ndarray, channels: int) -> list[IndexMap]:
    if s.size == 0:
        return []
    counts = np.bincount(s - s[0])
    k = int(counts[0])
    if not np.all(counts == k):
        return []  # channels skipped inside the range, or uneven repeats
    a, b = int(s[0]), int(s[-1]) + 1
    window: IndexMap = IdentityMap() if (a, b) == (0, channels) else WindowMap(a, b)
    first = d[::k]  # lowest position of each channel
    if k == 1:
        return [window.then(OffsetMap(int(first[0])))]
    step = int(d[1] - d[0])
    scale = int(first[1] - first[0]) if len(first) > 1 else k * step
    return [window.then(RepeatMap(k, scale, step)).then(OffsetMap(int(first[0])))]


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
