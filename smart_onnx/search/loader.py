"""The rows of the coming training batches, read in this process or ahead of time by DataLoader workers.

The batch order is drawn here, in the training process, from one seeded stream (the same on
every rank of a data-parallel run); a :class:`torch.utils.data.DataLoader` only reads the rows
of each draw, in draw order. With ``workers`` > 0 it reads ahead in worker processes, which pays
when reading costs: memory-mapped files on a slow disk, images decoded on access.
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
from smart_onnx.search.distributed import shard

__all__ = ["BatchReader", "Draw", "draws"]


class Draw(NamedTuple):
    """One training step's samples: the global ``batch``, this rank's ``rows`` of it, the sample indices ``read``."""

    batch: np.ndarray
    rows: np.ndarray
    read: np.ndarray


def draws(batches: Iterator[np.ndarray], whole_batch: bool) -> Iterator[Draw]:
    """Each global batch with this rank's rows; ``whole_batch`` reads all of it (augmentation draws for all)."""
    for batch in batches:
        rows = shard(np.arange(len(batch)))
        yield Draw(batch, rows, batch if whole_batch else batch[rows])


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
