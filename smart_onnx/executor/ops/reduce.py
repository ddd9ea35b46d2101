"""Reductions (ReduceMean, ReduceSum, ...) and ArgMax/ArgMin.

``axes`` is an attribute up to the version listed in ``_AXES_INPUT_SINCE`` and an
optional input (shape data) from it on; then an empty or missing ``axes`` reduces
everything unless ``noop_with_empty_axes`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops._ort_sum import ort_order_sum
from smart_onnx.executor.registry import register

__all__ = ["mean_last_axis"]  # handlers are reached through the registry

ReduceFn = Callable[[torch.Tensor, list[int], bool], torch.Tensor]


def _prod(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):  # torch.prod takes one dim at a time
        x = torch.prod(x, dim=d, keepdim=keep)
    return x


def _extreme(fn: Callable[..., torch.Tensor], empty: float) -> ReduceFn:
    """ReduceMax/Min; an empty reduction yields ``empty`` (-inf/+inf, or the integer type's limit)."""

    def reduce(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
        if any(x.shape[d] == 0 for d in dims):
            shape = [1 if d in dims else s for d, s in enumerate(x.shape) if keep or d not in dims]
            info = torch.finfo(x.dtype) if x.is_floating_point() else None
            if info is None and x.dtype != torch.bool:
                fill = torch.iinfo(x.dtype).min if empty < 0 else torch.iinfo(x.dtype).max
            else:
                fill = empty if x.dtype != torch.bool else empty > 0
            return torch.full(shape, fill, dtype=x.dtype, device=x.device)
        if x.dtype == torch.bool:  # bool ReduceMax/Min (opset 20): any/all
            return fn(x.to(torch.uint8), dim=dims, keepdim=keep).to(torch.bool)
        return fn(x, dim=dims, keepdim=keep)

    return reduce


def _last_axis_float32(x: torch.Tensor, dims: list[int]) -> bool:
    """A float32 reduction over the last axis alone: summed in onnxruntime's order (see _ort_sum)."""
    return x.dtype == torch.float32 and dims == [x.dim() - 1] and x.shape[-1] > 0


def _sum(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    if _last_axis_float32(x, dims):
        out = ort_order_sum(x)
        return out if keep else out.squeeze(-1)
    return torch.sum(x, dim=dims, keepdim=keep)


def _mean(x: torch.Tensor, dims: list[int], keep: bool) -> torch.Tensor:
    if _last_axis_float32(x, dims):
        return _sum(x, dims, keep) / x.shape[-1]
    if x.is_floating_point():
        return torch.mean(x, dim=dims, keepdim=keep)
    count = 1
    for d in dims:
        count *= x.shape[d]
    return torch.div(_sum(x, dims, keep), count, rounding_mode="trunc")  # integer mean truncates, as C++


def mean_last_axis(x: torch.Tensor) -> torch.Tensor:
    """ReduceMean over the last axis, keeping it (in onnxruntime's summation order for float32)."""
    return _mean(x, [x.dim() - 1], True)


class _Reduce(OpModule):
    fn: ClassVar[ReduceFn]
    axes_input_since: ClassVar[int]

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        from_input = ctx.version >= cls.axes_input_since
        allowed = {"keepdims", "noop_with_empty_axes"} if from_input else {"axes", "keepdims"}
        unknown = sorted(set(ctx.attrs) - allowed)
        if unknown:
            raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported at this opset: {sorted(allowed)}")
        keepdims, noop = int(ctx.attrs.get("keepdims", 1)), int(ctx.attrs.get("noop_with_empty_axes", 0))
        return cls(ctx.attrs.get("axes"), keepdims, noop)

    def __init__(self, axes: Sequence[int] | None, keepdims: int, noop_with_empty_axes: int) -> None:
        super().__init__()
        self.axes = None if axes is None else [int(a) for a in axes]
        self.keep, self.noop = bool(keepdims), bool(noop_with_empty_axes)

    static_inputs = frozenset({1})

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = self.ints(axes) if axes is not None else self.axes
        if not dims:
            if self.noop:
                return x
            dims = list(range(x.dim()))
        dims = sorted({d + x.dim() if d < 0 else d for d in dims})
        if not dims:  # rank-0 input
            return x
        return type(self).fn(x, dims, self.keep).to(x.dtype)


class _WeighedMean(_Reduce):
    """ReduceMean; with ``channel_weights`` (mean 1 over the channel axis it reduces) a weighted mean: over the kept
    channels of a channel mask, what the pruned model's ReduceMean computes. ``mean(x * w)`` is also how the
    verification's masked model writes it in ONNX (a Mul before the ReduceMean), so both round alike."""

    weighs_channels = True

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None,
                channel_weights: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x if channel_weights is None else x * channel_weights, axes)


def _reduce(op_type: str, fn: ReduceFn, versions: tuple[int, ...], axes_input_since: int = 18,
            base: type[_Reduce] = _Reduce) -> None:
    attrs = {"fn": staticmethod(fn), "axes_input_since": axes_input_since, "__doc__": f"ONNX {op_type}."}
    register(op_type, versions=versions)(type(op_type, (base,), attrs))


_reduce("ReduceSum", _sum, (11, 13), axes_input_since=13)
_reduce("ReduceMean", _mean, (11, 13, 18), base=_WeighedMean)
_reduce("ReduceMax", _extreme(torch.amax, float("-inf")), (11, 12, 13, 18, 20))
_reduce("ReduceMin", _extreme(torch.amin, float("inf")), (11, 12, 13, 18, 20))
_reduce("ReduceProd", _prod, (11, 13, 18))
_reduce("ReduceL1", lambda x, d, k: _sum(torch.abs(x), d, k), (11, 13, 18))
_reduce("ReduceL2", lambda x, d, k: torch.sqrt(_sum(x * x, d, k)), (11, 13, 18))
_reduce("ReduceSumSquare", lambda x, d, k: _sum(x * x, d, k), (11, 13, 18))
_reduce("ReduceLogSum", lambda x, d, k: torch.log(_sum(x, d, k)), (11, 13, 18, 28))
_reduce("ReduceLogSumExp", lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k), (11, 13, 18, 28))


class _ArgReduce(OpModule):
    """ArgMax/ArgMin along ``axis``; ``select_last_index`` picks the last of tied extremes."""

    fn: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> None:
        super().__init__()
        self.axis, self.keep, self.last = int(axis), bool(keepdims), bool(select_last_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = type(self).fn
        if not self.last:
            return fn(x, dim=self.axis, keepdim=self.keep)  # torch returns the first extreme
        size = x.shape[self.axis]
        return size - 1 - fn(torch.flip(x, dims=(self.axis,)), dim=self.axis, keepdim=self.keep)


for _op, _fn in (("ArgMax", torch.argmax), ("ArgMin", torch.argmin)):
    register(_op, versions=(11, 12, 13))(type(_op, (_ArgReduce,), {"fn": staticmethod(_fn), "__doc__": f"ONNX {_op}."}))
