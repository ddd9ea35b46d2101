"""The rows of the coming training batches, read in this process or ahead of time by DataLoader workers.

The batch order is drawn here, in the training process, from one seeded stream (the same on
every rank of a data-parallel run, and the same as in one process); a
:class:`torch.utils.data.DataLoader` only reads the rows of each draw, in draw order. With
``workers`` > 0 it reads ahead in worker processes, which pays when reading costs:
memory-mapped files on a slow disk, images decoded on access.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from smart_onnx.data import read_rows
from smart_onnx.search.distributed import rank, shard, world_size

__all__ = ["BatchReader", "Draw", "draws", "owned_samples", "sampler", "to_device"]


class Draw(NamedTuple):
    """One training step's samples: the global ``batch``, this rank's ``rows`` of it, the sample indices ``read``.

    ``share``: the part of the batch's loss this rank's rows carry (``len(rows) / len(batch)``; 0
    for a placeholder row, see :func:`draws`).
    """

    batch: np.ndarray
    rows: np.ndarray
    read: np.ndarray
    share: float = 1.0


def owned_samples(n: int) -> range:
    """This rank's part of ``n`` samples: the teacher's pass runs these, and holds their outputs only.

    Contiguous parts of ``range(n)`` (sizes differ by at most one); all of it in one process.
    """
    part = np.array_split(np.arange(n), world_size())[rank()]
    return range(int(part[0]), int(part[-1]) + 1) if len(part) else range(0)


def sampler(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless shuffled global batches of ``min(batch_size, n)`` samples (a new permutation per epoch).

    The same on every rank, and the same as in one process: a data-parallel run trains on the
    batches one process would, each rank on its rows of them (see :func:`draws`).
    """
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, n)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def draws(batches: Iterator[np.ndarray], whole_batch: bool, owned: range | None = None) -> Iterator[Draw]:
    """Each global batch with this rank's rows; ``whole_batch`` reads all of it (augmentation draws for all).

    ``owned`` None: a contiguous slice of every batch (:func:`~smart_onnx.search.distributed.shard`,
    the same share on every rank). ``owned`` given: the rows whose samples this rank owns (it holds
    their teacher outputs), a share that varies from batch to batch; where it is empty the rank
    reads the batch's first row as a placeholder with ``share`` 0, a zero-weighted step that keeps
    every rank in the same collectives.
    """
    for batch in batches:
        if owned is None:
            rows = shard(np.arange(len(batch)))
        else:
            rows = np.flatnonzero((batch >= owned.start) & (batch < owned.stop))
        share = len(rows) / len(batch)
        if not len(rows):
            rows = np.arange(1)
        yield Draw(batch, rows, batch if whole_batch else batch[rows], share)


def to_device(arrays: Mapping[str, np.ndarray], device: torch.device | str) -> dict[str, torch.Tensor]:
    """A batch's arrays (a :class:`~smart_onnx.data.Dataset` batch's ``inputs``) as tensors on ``device``."""
    return {k: torch.from_numpy(np.ascontiguousarray(a)).to(device) for k, a in arrays.items()}


class _Rows(TorchDataset):
    """Map-style dataset whose item is a whole batch: the arrays' rows at an index array."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = dict(arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(read_rows(a, rows))) for k, a in self.arrays.items()}


class BatchReader:
    """``next(reader)``: the next draw and its arrays (CPU tensors), read in order.

    Args:
        arrays: the dataset's arrays (memory-mapped ones are read row by row).
        draws: the draws, endless.
        workers: DataLoader worker processes reading ahead (0: read in this process, when asked).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], draws: Iterator[Draw], workers: int = 0) -> None:
        self._rows, self._draws = _Rows(arrays), draws
        self._pending: deque[Draw] = deque()
        self._loaded = None
        if workers > 0:
            loader = DataLoader(self._rows, batch_size=None, sampler=self._plan(), num_workers=workers,
                                prefetch_factor=2)
            self._loaded = iter(loader)

    def _plan(self) -> Iterator[np.ndarray]:
        for draw in self._draws:  # iterated by the DataLoader in this process, ahead of the steps
            self._pending.append(draw)
            yield draw.read

    def __iter__(self) -> BatchReader:
        return self

    def __next__(self) -> tuple[Draw, dict[str, torch.Tensor]]:
        if self._loaded is None:
            draw = next(self._draws)
            return draw, self._rows[draw.read]
        arrays = next(self._loaded)
        return self._pending.popleft(), arrays
