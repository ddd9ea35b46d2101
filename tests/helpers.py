"""Shared test utilities: one-node models, onnxruntime reference runs, closeness."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from onnx import helper, numpy_helper

from devkit.runs import relative_error, run_executor, run_ort
from smart_onnx.model import MAX_IR_VERSION

__all__ = ["assert_matches_ort", "count_forwards", "held_batches", "make_model", "mask_overlap", "relative_error",
           "run_executor", "run_ort", "run_ranks"]


def make_model(
    nodes: Sequence[onnx.NodeProto] | onnx.NodeProto,
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
    extra_opsets: Mapping[str, int] | None = None,
) -> onnx.ModelProto:
    """A model around ``nodes``; runtime inputs typed from the example arrays, outputs untyped."""
    nodes = [nodes] if isinstance(nodes, onnx.NodeProto) else list(nodes)
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in inputs.items()],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(MAX_IR_VERSION, 8 if opset <= 17 else 10)
    return model


def assert_matches_ort(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], rtol: float = 1e-5
) -> None:
    """The executor reproduces onnxruntime on every output (same shape, dtype kind, values)."""
    expected = run_ort(model, feeds)
    actual = run_executor(model, feeds)
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.shape == e.shape, f"output {i}: shape {a.shape} != onnxruntime {e.shape}"
        if e.dtype == np.bool_ or np.issubdtype(e.dtype, np.integer):
            np.testing.assert_array_equal(a, e, err_msg=f"output {i}")
        else:
            err = relative_error(a, e)
            assert err <= rtol, f"output {i}: relative error {err:.3g} > {rtol}"


def mask_overlap(a: onnx.ModelProto, b: onnx.ModelProto) -> float:
    """Agreement of two pruned models' zeros in their weight matrices and kernels: 1 - |a xor b| / |a or b|."""
    def zeros(model: onnx.ModelProto) -> np.ndarray:
        return np.concatenate([(numpy_helper.to_array(t) == 0).reshape(-1) for t in model.graph.initializer
                               if len(t.dims) >= 2])
    za, zb = zeros(a), zeros(b)
    return 1.0 - np.count_nonzero(za != zb) / max(1, np.count_nonzero(za | zb))


def _rank_main(rank: int, world: int, folder: str, worker: Callable[..., Any], args: tuple) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    try:
        torch.save(worker(*args), f"{folder}/rank{rank}.pt")
    finally:
        gc.collect()  # what the worker left in reference cycles (ZeRO's optimiser) goes while the group lives
        dist.destroy_process_group()


def run_ranks(worker: Callable[..., Any], world: int, folder: Path, *args: Any) -> list[Any]:
    """``worker(*args)`` in ``world`` processes joined in one gloo process group; their results by rank.

    The processes are spawned (torch.multiprocessing), so ``worker`` must be a module-level
    function and ``args`` picklable; the results travel back through ``torch.save`` in ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mp.spawn(_rank_main, args=(world, str(folder), worker, args), nprocs=world, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world)]


def count_forwards(module: torch.nn.Module, method: str = "forward") -> list[int]:
    """A one-element list that counts ``module``'s calls of ``method`` (its forward passes) from now on."""
    runs = [0]
    forward = getattr(module, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs[0] += 1
        return forward(*args, **kwargs)

    setattr(module, method, counted)
    return runs


def held_batches(monkeypatch: Any) -> list[int]:
    """Watch ``Dataset.batches``: before each batch is read, how many batches read earlier are still referenced.

    A consumer that streams holds one or two (the one in hand, one kept aside); one that lists the
    batches first holds them all.
    """
    from smart_onnx.data import Dataset

    counts: list[int] = []
    batches = Dataset.batches

    def watched(self: Dataset, *args: Any, **kwargs: Any) -> Any:
        earlier: list[weakref.ref] = []
        for batch in batches(self, *args, **kwargs):
            gc.collect()
            counts.append(sum(ref() is not None for ref in earlier))
            earlier.append(weakref.ref(next(iter(batch.inputs.values()))))
            yield batch

    monkeypatch.setattr(Dataset, "batches", watched)
    return counts
