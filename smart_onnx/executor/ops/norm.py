"""Normalizations: BatchNormalization (inference), InstanceNormalization, LayerNormalization,
GroupNormalization, LRN, LpNormalization, MeanVarianceNormalization."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.reduce import mean_last_axis
from smart_onnx.executor.registry import register

__all__ = ["weighed_layer_norm"]  # handlers are reached through the registry


def _stash_dtype(x: torch.Tensor, stash_type: int) -> torch.dtype:
    """Computation dtype: stash_type 1 (float32) widens half/bfloat16 inputs, never narrows double."""
    if stash_type == 1 and x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype


def _check(ctx: NodeContext, allowed: set[str]) -> dict[str, object]:
    unknown = sorted(set(ctx.attrs) - allowed)
    if unknown:
        raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported: {sorted(allowed)}")
    if ctx.attrs.get("stash_type", 1) != 1:
        raise GraphError(f"{ctx.describe()} has stash_type={ctx.attrs['stash_type']}; only 1 (float32) is supported")
    return dict(ctx.attrs)


@register("BatchNormalization", versions=(9, 14, 15))
class BatchNormalization(OpModule):
    """ONNX BatchNormalization with inference semantics (running mean and variance).

    The running statistics (inputs 3 and 4) are statistics, not trained weights, so
    they stay constants like a torch BatchNorm's buffers.
    """

    static_inputs = frozenset({3, 4})

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        attrs = _check(ctx, {"epsilon", "momentum", "training_mode"})
        if attrs.get("training_mode", 0):
            raise GraphError(f"{ctx.describe()} has training_mode=1; only inference (training_mode=0) is supported")
        return cls(epsilon=float(attrs.get("epsilon", 1e-5)))

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> torch.Tensor:
        dt = x.dtype
        return F.batch_norm(x, mean.to(dt), var.to(dt), scale.to(dt), b.to(dt), False, 0.0, self.epsilon)


@register("InstanceNormalization", versions=(6, 22))
class InstanceNormalization(OpModule):
    """ONNX InstanceNormalization: per-sample, per-channel statistics over spatial axes."""

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = float(epsilon)

    def forward(self, x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=scale, bias=b, eps=self.epsilon)


@register("LayerNormalization", versions=(17,))
class LayerNormalization(OpModule):
    """ONNX LayerNormalization over axes ``axis..rank-1``; outputs Mean and InvStdDev when requested."""

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        attrs = _check(ctx, {"axis", "epsilon", "stash_type"})
        n_out = len(ctx.node.output)
        return cls(int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)), n_out > 1)

    def __init__(self, axis: int = -1, epsilon: float = 1e-5, with_stats: bool = False) -> None:
        super().__init__()
        self.axis, self.epsilon, self.with_stats = axis, epsilon, with_stats

    weighs_channels = True

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None = None,
        channel_weights: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if channel_weights is not None:
            return self._weighed(x, scale, b, channel_weights)
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        shape = tuple(x.shape[axis:])
        xc = x.to(_stash_dtype(x, 1))
        weight = scale.to(xc.dtype).expand(shape)
        bias = None if b is None else b.to(xc.dtype).expand(shape)
        y = F.layer_norm(xc, shape, weight, bias, self.epsilon).to(x.dtype)
        if not self.with_stats:
            return y
        dims = tuple(range(axis, x.dim()))
        mean = xc.mean(dim=dims, keepdim=True)
        var = (xc - mean).square().mean(dim=dims, keepdim=True)
        return y, mean, torch.rsqrt(var + self.epsilon)


    def _weighed(self, x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        """The channel analysis gives weights only to a LayerNorm over the last axis alone without its statistics
        outputs."""
        return weighed_layer_norm(x, scale, b, w, self.epsilon)[0]


def weighed_layer_norm(x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None, w: torch.Tensor,
                       epsilon: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` normalised over the last axis with its mean and variance weighted by ``w`` (mean 1 over that axis): over
    the kept channels of a channel mask, as the pruned model's LayerNorm computes them; and that mean and standard
    deviation. The op order is the one the verification's masked model writes in ONNX (``rewrite.weigh_statistics``)."""
    mean = mean_last_axis(x * w)
    d = x - mean
    std = torch.sqrt(mean_last_axis(d * d * w) + epsilon)
    y = d / std * scale
    return (y if b is None else y + b), mean, std


@register("GroupNormalization", versions=(18, 21))
class GroupNormalization(OpModule):
    """ONNX GroupNormalization: scale/bias are per group at version 18, per channel from 21."""

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        attrs = _check(ctx, {"epsilon", "num_groups", "stash_type"})
        if "num_groups" not in attrs:
            raise GraphError(f"{ctx.describe()} has no num_groups attribute, which ONNX requires")
        return cls(int(attrs["num_groups"]), float(attrs.get("epsilon", 1e-5)), per_group=ctx.version < 21)

    def __init__(self, num_groups: int, epsilon: float = 1e-5, per_group: bool = False) -> None:
        super().__init__()
        self.num_groups, self.epsilon, self.per_group = num_groups, epsilon, per_group

    def forward(self, x: torch.Tensor, scale: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        xc = x.to(_stash_dtype(x, 1))
        scale, b = scale.to(xc.dtype), b.to(xc.dtype)
        if self.per_group:
            repeat = x.shape[1] // self.num_groups
            scale, b = scale.repeat_interleave(repeat), b.repeat_interleave(repeat)
        return F.group_norm(xc, self.num_groups, scale, b, self.epsilon).to(x.dtype)


@register("LRN", versions=(1, 13))
class LRN(OpModule):
    """ONNX LRN: across channels, window ``[c - (size-1)//2, c + ceil((size-1)/2)]``
    (torch's local_response_norm centres even windows the other way)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.size - 1) // 2
        sq = F.pad((x * x).unsqueeze(1), [0, 0] * (x.dim() - 2) + [before, self.size - 1 - before])
        kernel = (self.size, *([1] * (x.dim() - 2)))
        # avg over the window = square_sum / size, so alpha * avg is the spec's alpha / size * square_sum
        pool = F.avg_pool3d if x.dim() == 4 else F.avg_pool2d if x.dim() == 3 else None
        if pool is None:
            raise GraphError(f"node {getattr(self, 'onnx_node', '?')!r} (LRN) supports rank 3 and 4, got {x.dim()}")
        mean = pool(sq, kernel, stride=1).squeeze(1)
        return x / (self.bias + self.alpha * mean) ** self.beta


@register("LpNormalization", versions=(1, 22))
class LpNormalization(OpModule):
    """ONNX LpNormalization: ``x / ||x||_p`` along ``axis`` (p = 1 or 2)."""

    def __init__(self, axis: int = -1, p: int = 2) -> None:
        super().__init__()
        if int(p) not in (1, 2):
            raise TypeError(f"p={p} (supported: 1, 2)")
        self.axis, self.p = int(axis), int(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, ord=self.p, dim=self.axis, keepdim=True)
        return x / torch.where(norm == 0, torch.ones_like(norm), norm)  # an all-zero slice stays zero


@register("MeanVarianceNormalization", versions=(9, 13))
class MeanVarianceNormalization(OpModule):
    """ONNX MeanVarianceNormalization: ``(x - mean) / sqrt(var)`` over ``axes`` (default N, H, W)."""

    def __init__(self, axes: list[int] | None = None) -> None:
        super().__init__()
        self.axes = tuple(axes) if axes is not None else (0, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=self.axes, keepdim=True)
        var = (x * x).mean(dim=self.axes, keepdim=True) - mean * mean
        return (x - mean) / (torch.sqrt(var) + 1e-9)
