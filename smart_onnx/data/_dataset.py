"""An in-memory dataset: one array per graph input, samples along axis 0."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from smart_onnx.data._conform import LABEL_KEY, check_lengths, format_shape
from smart_onnx.data._mapped import Joined, Rows, is_lazy
from smart_onnx.errors import DataError

__all__ = ["EVAL_HOLDOUT", "Batch", "Dataset", "concat"]

# The fraction of the data held out for evaluation when no evaluation data is given (prune, quantize).
EVAL_HOLDOUT = 0.2


class Batch(NamedTuple):
    """One batch: ``inputs`` keyed by graph-input name, and labels if the dataset has them."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None


@dataclass(frozen=True)
class Dataset:
    """Samples for a model's inputs.

    Attributes:
        arrays: one array per graph input (in the model's input order), cast to the
            input's dtype, all with the same number of samples along axis 0. Arrays read
            from ``.npy`` / uncompressed ``.npz`` files are memory-mapped (see ``_mapped.py``):
            ``arrays[k][idx]`` reads those rows, and :meth:`select` copies nothing.
        labels: one int64 class index per sample, or None.
        source: where the data came from (a path, or a description), for messages.
    """

    arrays: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = "<arrays>"

    def __post_init__(self) -> None:
        check_lengths(self.arrays, self.labels, self.source)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    @property
    def input_names(self) -> list[str]:
        return list(self.arrays)

    def select(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = None if self.labels is None else np.asarray(self.labels[idx])
        return Dataset({k: _rows(a, idx) for k, a in self.arrays.items()}, labels, self.source)

    def take(self, n: int) -> Dataset:
        """The first ``min(n, len(self))`` samples.

        Raises:
            DataError: ``n`` is smaller than 1.
        """
        if n < 1:
            raise DataError(f"cannot take {n} samples from {self.source}; ask for at least 1")
        return self.select(np.arange(min(n, len(self))))

    def split(self, holdout_fraction: float = EVAL_HOLDOUT, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A deterministic random split into ``(calibration, holdout)``.

        The holdout gets ``round(len * holdout_fraction)`` samples, clamped so that
        both parts hold at least one; each part keeps the original sample order.
        The same data, fraction and seed always give the same split.

        Raises:
            DataError: the fraction is not strictly between 0 and 1, or the dataset
                has fewer than 2 samples.
        """
        n = len(self)
        if not 0.0 < holdout_fraction < 1.0:
            raise DataError(f"holdout fraction must be between 0 and 1 (exclusive), got {holdout_fraction}")
        if n < 2:
            raise DataError(f"{self.source} has {n} sample(s), too few to hold any out for evaluation")
        n_hold = min(max(round(n * holdout_fraction), 1), n - 1)
        order = np.random.default_rng(seed).permutation(n)
        return self.select(np.sort(order[n_hold:])), self.select(np.sort(order[:n_hold]))

    def batches(
        self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[Batch]:
        """Iterate over the dataset once in batches.

        Every sample appears exactly once per call (the last batch may be smaller
        unless ``drop_last``). With ``shuffle``, the order is a permutation drawn
        from ``seed``: pass a different seed per epoch for a different order.
        ``shard=(i, n)`` yields only batches ``i, i + n, i + 2n, ...`` of that sequence
        (one process's share of a data-parallel pass); the others are never read.

        Raises:
            DataError: ``batch_size`` is smaller than 1.
        """
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        first, every = shard
        for start in range(first * batch_size, stop, every * batch_size):
            part = self.select(order[start : start + batch_size])
            yield Batch({k: np.asarray(a) for k, a in part.arrays.items()}, part.labels)

    def describe(self) -> str:
        """One line: sample count, each input's shape and dtype, labels."""
        parts = [f"{k} {format_shape(a.shape)} {a.dtype}" for k, a in self.arrays.items()]
        labels = "no labels" if self.labels is None else f"{len(np.unique(self.labels))} label classes"
        return f"{len(self)} samples from {self.source}: {', '.join(parts)}; {labels}"


def _rows(array: np.ndarray | Rows, idx: np.ndarray) -> np.ndarray | Rows:
    """Rows ``idx`` of ``array``: a copy in memory, a lazy :class:`Rows` of a memory-mapped one."""
    if isinstance(array, Rows):
        return array.select(idx)
    return Rows(array, idx) if is_lazy(array) else array[idx]


def concat(parts: Sequence[Dataset], source: str) -> Dataset:
    """Datasets with the same inputs joined along the sample axis.

    Raises:
        DataError: the parts have different inputs, only some have labels, or an
            input's per-sample shape differs between parts (symbolic dims must agree
            to be stacked).
    """
    first = parts[0]
    if len(parts) == 1:
        return Dataset(first.arrays, first.labels, source)
    for part in parts[1:]:
        if part.input_names != first.input_names or (part.labels is None) != (first.labels is None):
            raise DataError(
                f"{part.source} has arrays {_keys(part)} but {first.source} has {_keys(first)}; "
                f"all files in {source} need the same arrays"
            )
        for name, array in part.arrays.items():
            if array.shape[1:] != first.arrays[name].shape[1:]:
                raise DataError(
                    f"input {name!r} has per-sample shape {format_shape(array.shape[1:])} in {part.source} but "
                    f"{format_shape(first.arrays[name].shape[1:])} in {first.source}; all files must agree"
                )
    arrays = {k: _join([p.arrays[k] for p in parts]) for k in first.input_names}
    labels = None if first.labels is None else np.concatenate([p.labels for p in parts])
    return Dataset(arrays, labels, source)


def _join(parts: list[np.ndarray]) -> np.ndarray | Joined:
    """One array of the parts: joined lazily where any reads from disk (a copy would load the files whole)."""
    return Joined(parts) if any(is_lazy(p) for p in parts) else np.concatenate(parts)


def _keys(data: Dataset) -> list[str]:
    return sorted(data.input_names + ([] if data.labels is None else [LABEL_KEY]))
