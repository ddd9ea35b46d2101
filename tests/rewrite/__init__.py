"""Rewriter tests. Shared builders: models whose outputs are typed, so the originals pass the full checker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from smart_onnx.model import OnnxModel, normalize
from tests.helpers import make_model

if TYPE_CHECKING:  # block-mode tests must not depend on the analysis or the executor
    from smart_onnx.graph import Analysis
    from smart_onnx.graph.groups import CouplingGroup
    from smart_onnx.graph.layers import PrunableLayer
    from smart_onnx.rewrite import BlockMask


def typed_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> OnnxModel:
    """A normalised model like ``tests.helpers.make_model`` builds, with output types from shape inference."""
    proto = make_model(nodes, inputs, outputs, initializers, opset)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in proto.graph.output:
        out.CopyFrom(known[out.name])
    onnx.checker.check_model(proto, full_check=True)
    return normalize(proto)


def random_feeds(model: OnnxModel, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 feeds for every (static-shaped) input."""
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in model.inputs}


def random_keep(channels: int, removed: float, seed: int = 0) -> np.ndarray:
    """Sorted kept indices with round(removed * channels) channels dropped (always at least one kept)."""
    n_keep = max(1, channels - round(removed * channels))
    return np.sort(np.random.default_rng(seed).choice(channels, n_keep, replace=False)).astype(np.int64)


def channel_masks(groups: Sequence[CouplingGroup], keep: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """Per activation value, a 0/1 vector over its channel axis: 0 where a removed group channel sits."""
    masks: dict[str, np.ndarray] = {}
    for group in groups:
        if group.id not in keep:
            continue
        removed = np.setdiff1d(np.arange(group.channels), keep[group.id])
        for s in group.values:
            mask = masks.setdefault(s.tensor, np.ones(s.axis_size, np.float32))
            mask[s.removed_positions(removed)] = 0.0
    return masks


def masked_executor_outputs(
    model: OnnxModel,
    groups: Sequence[CouplingGroup],
    keep: Mapping[int, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    analysis: Analysis | None = None,
) -> list[np.ndarray]:
    """The ORIGINAL model run by the Executor with removed channels zeroed in every activation carrying them.

    Where a group's channels are also reduced over (a LayerNorm on the hidden dimension), zeros alone are not
    the pruned model: its statistics are over the kept channels only. Those nodes get the search's mean-1
    channel weighting, which needs the ``analysis`` the groups come from.
    """
    from smart_onnx.executor import Executor

    axes = {s.tensor: s.axis for g in groups for s in g.values}

    def zeroing(mask: np.ndarray, axis: int):
        def apply(t: torch.Tensor) -> torch.Tensor:
            shape = [1] * t.dim()
            shape[axis] = -1
            return t * torch.from_numpy(mask).to(t.dtype).reshape(shape)

        return apply

    transforms: dict = {name: zeroing(mask, axes[name]) for name, mask in channel_masks(groups, keep).items()}
    if any(g.statistics and g.id in keep for g in groups):
        assert analysis is not None, "groups with statistics need the analysis for their kept-channel weighting"
        transforms.update(_statistics_weighting(model, analysis, groups, keep))
    with torch.no_grad():
        out = Executor(model)({k: torch.from_numpy(v) for k, v in feeds.items()}, transforms=transforms)
    return [v.numpy() for v in out.values()]


def _statistics_weighting(
    model: OnnxModel, analysis: Analysis, groups: Sequence[CouplingGroup], keep: Mapping[int, np.ndarray]
) -> dict:
    """The channel-space transforms of the statistics nodes alone, for the kept channels as a flat 0/1 mask."""
    from smart_onnx.executor import ChannelWeights
    from smart_onnx.search.space import ChannelSpace

    space = ChannelSpace(analysis, groups, {t.name: tuple(t.dims) for t in model.graph.initializer})
    mask = torch.cat([
        torch.from_numpy(np.isin(np.arange(g.channels), keep.get(g.id, np.arange(g.channels))).astype(np.float32))
        for g in space.groups
    ]) if space.groups else torch.zeros(0)
    return {key: t for key, t in space.transforms(mask).items() if isinstance(key, ChannelWeights)}


def random_block_masks(layers: Sequence[PrunableLayer], sparsity: float, seed: int = 0) -> dict[str, BlockMask]:
    """Per layer weight, random blocks pruned with probability ``sparsity``: 16x8 (out x in) at one kernel
    position for convs, 4x1 for Gemm/MatMul, given in the tensor's own axis order."""
    from smart_onnx.rewrite import BlockMask

    rng = np.random.default_rng(seed)
    masks = {}
    for layer in layers:
        canonical = (16, 8) + (1,) * len(layer.kernel_axes) if layer.kernel_axes else (4, 1)
        block = tuple(canonical[i] for i in layer.tensor_axes)
        grid = tuple(-(-d // b) for d, b in zip(layer.weight_shape, block))
        masks[layer.weight] = BlockMask(rng.random(grid) >= sparsity, block)
    return masks


def zeroed_reference(model: OnnxModel, masks: Mapping[str, BlockMask]) -> onnx.ModelProto:
    """The original model with the masked elements zeroed by numpy (what block mode must compute)."""
    ref = model.copy()
    for tensor in ref.graph.initializer:
        if tensor.name in masks:
            w = numpy_helper.to_array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(w * masks[tensor.name].expand(w.shape), tensor.name))
    return ref.proto
