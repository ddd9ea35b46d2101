"""Data-parallel search and fine-tune over torch.distributed: what every rank must agree on.

``torchrun --nproc-per-node N smart-onnx prune ...`` starts N copies of the command; torchrun
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and :func:`init_from_env` joins them in one
process group (``gloo`` on CPU, ``nccl`` on CUDA). Every rank loads the same model and data
and walks the same global batch order; each trains on its rows of every global batch
(:func:`shard`'s even slice, or the rows of its own samples, see search/loader.py), and the passes
that only accumulate (statistics, the teacher's pass, the refit's sums) run 1/N of the batches
per rank and add up their sums (:func:`batch_shard`, :func:`reduce_tensors`). After each
backward pass :func:`reduce_gradients` sums the gradients of the weights *and* the mask scores
(each rank's loss weighted by its share of the batch), so every rank takes the same optimiser step.
This is an explicit all-reduce, not DistributedDataParallel: the scores are a parameter outside
the executor and the soft mask reaches the weights through transforms passed per call, which
DDP's module wrapper does not see.

Decisions taken from measurements (the step plan from timed steps, the re-plan, every
deadline check) read :func:`clock`, rank 0's clock broadcast to all, so no rank stops or
re-plans alone (which would leave the others waiting in a collective). Without a process
group every function here is the single-process identity.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["adam", "any_over_ranks", "batch_shard", "broadcast_object", "broadcast_tensors", "clock", "init_from_env",
           "is_main", "local_device", "rank", "reduce_gradients", "reduce_named", "reduce_sum", "reduce_tensors",
           "shard", "shutdown", "world_size"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# Gradients are all-reduced in flat buckets of at most this many bytes (one extra copy, never the whole model).
BUCKET_BYTES = 32 * 2**20


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def adam(params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    """``torch.optim.Adam``; data-parallel, with its moments sharded across the ranks (ZeRO stage 1).

    Every rank holds the same summed gradients (:func:`reduce_gradients`), so the step is one
    Adam's; torch's ``ZeroRedundancyOptimizer`` keeps each tensor's two moments on one rank only,
    steps it there and broadcasts the result. Per rank the moments cost 2 / N copies of the
    weights instead of 2 (BERT-base at 2 ranks: 417 MiB less on each).
    """
    params = list(params)
    if not _active() or not params:
        return torch.optim.Adam(params, lr=lr)
    from torch.distributed.optim import ZeroRedundancyOptimizer

    return ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=lr)


def world_size() -> int:
    """Processes in the run (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def is_main() -> bool:
    """Rank 0: the process that rewrites, verifies, evaluates and writes."""
    return rank() == 0


def local_device(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per process); anything else is kept."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def init_from_env(device: str) -> bool:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1; returns whether this run is distributed.

    The backend follows the device: ``nccl`` for CUDA, ``gloo`` otherwise. A process group that
    already exists (a caller set one up) is used as it is.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _active()
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(torch.device(local_device(device)))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return _active()


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's contiguous slice of one global batch (sizes differ by at most one)."""
    if not _active():
        return indices
    return np.array_split(indices, world_size())[rank()]


def batch_shard() -> tuple[int, int]:
    """``(rank, world size)``: this rank's share of a pass over the data, batch ``k`` on rank ``k % N``.

    For ``Dataset.batches(shard=...)`` in passes that only accumulate sums (statistics, the
    teacher's pass, the refit's least squares), which :func:`reduce_tensors` then adds up.
    """
    return rank(), world_size()


def _sync_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def reduce_sum(values: Sequence[float]) -> list[float]:
    """The sums over ranks of a few numbers (float64)."""
    if not _active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_sync_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def any_over_ranks(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask true where it is true on any rank (e.g. channels alive anywhere in the global batch)."""
    if not _active():
        return mask
    t = mask.to(_sync_device(), torch.float32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.to(mask.device) > 0


def clock() -> float:
    """``time.perf_counter()`` of rank 0, the same number on every rank."""
    now = time.perf_counter()
    if not _active():
        return now
    t = torch.tensor([now], dtype=torch.float64, device=_sync_device())
    dist.broadcast(t, src=0)
    return float(t.item())


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` (picklable), on every rank."""
    if not _active():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` in place with rank 0's values (weights, scores, masks)."""
    if not _active():
        return
    with torch.no_grad():
        for t in tensors:
            if t.device.type == "cpu" and dist.get_backend() == "nccl":
                moved = t.to(_sync_device())
                dist.broadcast(moved, src=0)
                t.copy_(moved.cpu())
            else:
                dist.broadcast(t.data, src=0)


def _reduce_in_place(flat: torch.Tensor) -> None:
    """All-reduce (sum) one contiguous tensor in place, through the backend's device when it lives elsewhere."""
    if flat.device == _sync_device():
        dist.all_reduce(flat)
        return
    moved = flat.to(_sync_device())
    dist.all_reduce(moved)
    flat.copy_(moved)


def reduce_tensors(tensors: Sequence[torch.Tensor]) -> None:
    """Sum ``tensors`` over ranks, in place, keeping their dtypes (float64 sums stay float64).

    Every rank passes tensors of the same shapes and dtypes in the same order. Small ones travel
    together in flat buckets of at most :data:`BUCKET_BYTES` (one extra copy, never the whole
    set); a tensor larger than a bucket is reduced in bucket-sized slices of itself.
    """
    if not _active():
        return
    with torch.no_grad():
        bucket: list[torch.Tensor] = []
        size = 0

        def flush() -> None:
            if not bucket:
                return
            flat = torch.cat([b.reshape(-1) for b in bucket])
            _reduce_in_place(flat)
            offset = 0
            for b in bucket:
                b.copy_(flat[offset:offset + b.numel()].view(b.shape))
                offset += b.numel()
            bucket.clear()

        for t in tensors:
            nbytes = t.numel() * t.element_size()
            if nbytes > BUCKET_BYTES and t.is_contiguous():
                step = max(1, BUCKET_BYTES // t.element_size())
                flat = t.view(-1)
                for start in range(0, flat.numel(), step):
                    _reduce_in_place(flat[start:start + step])
                continue
            if bucket and (size + nbytes > BUCKET_BYTES or t.dtype != bucket[0].dtype or t.device != bucket[0].device):
                flush()
                size = 0
            bucket.append(t)
            size += nbytes
        flush()


def reduce_named(tensors: Mapping[K, torch.Tensor]) -> dict[K, torch.Tensor]:
    """Sums over ranks of named tensors (CPU), a name missing on some ranks counting as zeros there.

    For statistics accumulated over each rank's share of the data, where a rank that saw no
    batch of some value has no entry for it.
    """
    if not _active():
        return dict(tensors)
    specs: list[dict[K, tuple[tuple[int, ...], torch.dtype]]] = [{} for _ in range(world_size())]
    dist.all_gather_object(specs, {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()})
    union = {k: spec for ranked in specs for k, spec in ranked.items()}  # in the same order on every rank
    out = {k: tensors[k].clone() if k in tensors else torch.zeros(shape, dtype=dtype)
           for k, (shape, dtype) in union.items()}
    reduce_tensors(list(out.values()))
    return out


def reduce_gradients(params: Iterable[torch.Tensor], loss: torch.Tensor) -> float:
    """Sum every parameter's gradient and ``loss`` over ranks, in place; returns the summed loss.

    Each rank's loss was already weighted by its share of the global batch (see ``Trainer``),
    so the sums are the gradient and the loss of the whole batch, as one process computes them.
    A parameter without a gradient on this rank has none on any rank (every rank runs the same
    graph) and is skipped.
    """
    if not _active():
        return float(loss.detach())
    grads = [p.grad for p in params if p.grad is not None]
    device = grads[0].device if grads else _sync_device()
    summed = loss.detach().reshape(1).to(device, torch.float32).clone()
    reduce_tensors([summed, *grads])
    return float(summed)


def shutdown() -> None:
    """Leave the process group, if this process joined one, once every rank got here."""
    if dist.is_available() and dist.is_initialized():
        # ZeroRedundancyOptimizer sits in reference cycles that hold the process group: freed by the collector
        # after the group was destroyed, it aborted the process at exit now and then (gloo: "terminate called
        # without an active exception", one 2-rank test run in 8). Collected here, it goes while the group lives.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
