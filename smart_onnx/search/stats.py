"""Input-activation statistics of prunable layers, measured on calibration data.

For each prunable layer, the mean square of its input activation per input position
(channel for Conv, feature for Gemm/MatMul). Scores multiply weight magnitudes by these,
so a weight that multiplies a large activation counts for more.

Data-parallel, each rank runs its share of the ``stats_batches`` batches and the sums and
counts are added up over the ranks: the same statistics as one process, 1/N of the work each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch

from smart_onnx.executor import Executor
from smart_onnx.graph import PrunableLayer, find_prunable_layers
from smart_onnx.search.distributed import batch_shard, reduce_named
from smart_onnx.search.loader import to_device

if TYPE_CHECKING:
    from smart_onnx.data import Dataset

__all__ = ["StatsConfig", "activation_stats"]


class StatsConfig(Protocol):
    """What the measurement reads of its configuration (``SearchConfig`` has it), so stats needs no search."""

    batch_size: int
    stats_batches: int
    seed: int
    device: str


def _activation_of(node_inputs: list[str], weight_input: str, op_type: str) -> tuple[str, int] | None:
    """(value name, channel axis) of the activation a layer multiplies with its weight."""
    others = [n for n in node_inputs[:2] if n and n != weight_input]
    if not others:
        return None
    if op_type in ("Conv", "ConvTranspose", "Gemm"):
        return others[0], 1
    return others[0], -1  # MatMul: features on the last axis


def _mean_square(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Mean of ``x**2`` over every axis but ``axis`` (CPU float64).

    Squared in the input's dtype and summed in float64: one temporary the size of the activation,
    where squaring a float64 copy held two of twice its size (a peak of 5 activations, not 2).
    """
    dims = [d for d in range(x.dim()) if d != axis]
    count = x.numel() // max(1, x.shape[axis])
    return (x.square().sum(dim=dims, dtype=torch.float64) / max(1, count)).cpu()


def activation_stats(
    executor: Executor, data: Dataset, config: StatsConfig, layers: Sequence[PrunableLayer] | None = None
) -> dict[str, torch.Tensor]:
    """Layer name -> mean square of its input activation per input position (CPU float64).

    Args:
        executor: the model, run on ``config.stats_batches`` batches of ``data``.
        data: calibration data.
        config: batch size, number of batches, seed, device.
        layers: the layers to measure, e.g. a space's ``scored_layers`` (the analysis
            already found them); None finds every prunable layer of the executor's model.

    Returns:
        Statistics for the layers whose input activation the executor produced.
    """
    nodes = {n.name: n for n in executor.model.graph.node}
    watch: dict[str, list[tuple[str, int]]] = {}
    for layer in find_prunable_layers(executor.model) if layers is None else layers:
        found = _activation_of(list(nodes[layer.name].input), layer.weight_input, layer.op_type)
        if found:
            watch.setdefault(found[0], []).append((layer.name, found[1]))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def recorder(value: str):
        def record(x: torch.Tensor) -> torch.Tensor:
            if x.dim() < 2 or not x.is_floating_point():
                return x
            by_axis: dict[int, torch.Tensor] = {}  # layers reading the same value on the same axis share it
            for layer, axis in watch[value]:
                ax = axis % x.dim()
                if ax not in by_axis:
                    by_axis[ax] = _mean_square(x.detach(), ax)
                sums[layer] = sums[layer] + by_axis[ax] if layer in sums else by_axis[ax]
                counts[layer] = counts.get(layer, 0) + 1
            return x
        return record

    transforms = {value: recorder(value) for value in watch}
    device = torch.device(config.device)
    first, every = batch_shard()  # data-parallel: batch i on rank i % N, the sums and counts added up
    batches = data.batches(config.batch_size, shuffle=True, seed=config.seed, shard=(first, every))
    with torch.no_grad():
        for _, batch in zip(range(first, config.stats_batches, every), batches):
            feeds = to_device(batch.inputs, device)
            executor(feeds, transforms=transforms)
    sums = reduce_named(sums)
    counted = reduce_named({layer: torch.tensor([float(c)], dtype=torch.float64) for layer, c in counts.items()})
    return {layer: s / int(counted[layer].item()) for layer, s in sums.items()}
