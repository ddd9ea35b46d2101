"""Pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

Windows follow onnxruntime: output sizes from its formula (ceil_mode drops a last
window that would start past the input and left padding), padding applied
explicitly (asymmetric pads, auto_pad), so torch pooling always runs unpadded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.conv import auto_pads, check_attrs, spatial, torch_pad
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _out_size(size: int, k: int, s: int, d: int, begin: int, end: int, ceil_mode: bool) -> int:
    numerator = size + begin + end - d * (k - 1) - 1
    if not ceil_mode:
        return numerator // s + 1
    out = -(-numerator // s) + 1
    return out - 1 if (out - 1) * s >= size + begin else out


class _Pool(OpModule):
    """Shared attribute parsing and window geometry of MaxPool and AveragePool."""

    _attrs: tuple[str, ...] = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        check_attrs(ctx, cls._attrs)
        if "kernel_shape" not in ctx.attrs:
            raise GraphError(f"{ctx.describe()} has no kernel_shape attribute, which ONNX requires")
        return cls(**ctx.attrs)

    def __init__(
        self,
        kernel_shape: Sequence[int],
        auto_pad: str = "NOTSET",
        ceil_mode: int = 0,
        dilations: Sequence[int] | None = None,
        pads: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.kernel = [int(k) for k in kernel_shape]
        n = len(self.kernel)
        self.auto_pad, self.ceil_mode = auto_pad, bool(ceil_mode)
        self.dilations, self.strides = spatial(dilations, n, 1), spatial(strides, n, 1)
        self.pads = pads

    def _window(self, x: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
        """(ONNX pads, extra end padding so every output window exists, output sizes)."""
        n = len(self.kernel)
        if x.dim() != n + 2 or n not in _CONV:
            raise GraphError(f"{type(self).__name__} with a {n}-D kernel got an input of rank {x.dim()}")
        sizes = list(x.shape[2:])
        # onnxruntime sizes SAME padding for pooling with the undilated kernel.
        pads = auto_pads(self.auto_pad, sizes, self.kernel, self.strides, self.pads)
        outs, extra = [], []
        for i, (size, k, s, d) in enumerate(zip(sizes, self.kernel, self.strides, self.dilations)):
            out = _out_size(size, k, s, d, pads[i], pads[n + i], self.ceil_mode)
            needed = (out - 1) * s + d * (k - 1) + 1
            outs.append(out)
            extra.append(max(0, needed - (size + pads[i] + pads[n + i])))
        return pads, extra, outs

    @staticmethod
    def _narrow(y: torch.Tensor, outs: list[int]) -> torch.Tensor:
        for i, out in enumerate(outs):
            y = y.narrow(2 + i, 0, out)
        return y


@register("MaxPool", versions=(11, 12, 22))
class MaxPool(_Pool):
    """ONNX MaxPool (output 0 only; the Indices output is not supported)."""

    _attrs = (*_Pool._attrs, "storage_order")

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        if len(ctx.node.output) > 1 and ctx.node.output[1]:
            raise GraphError(f"{ctx.describe()} requests the Indices output; only output 0 (Y) is supported")
        attrs = dict(ctx.attrs)
        attrs.pop("storage_order", None)  # only affects Indices
        return super().from_node(NodeContext(ctx.node, ctx.version, attrs, ctx.constants, ctx.build_subgraph))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, extra, outs = self._window(x)
        n = len(self.kernel)
        dtype = x.dtype
        if not x.is_floating_point():  # int8/uint8 MaxPool: exact in float32
            x = x.float()
        x = F.pad(x, torch_pad(pads[:n] + [p + e for p, e in zip(pads[n:], extra)]), value=float("-inf"))
        y = _MAX_POOL[n](x, self.kernel, self.strides, 0, self.dilations)
        return self._narrow(y, outs).to(dtype)


@register("AveragePool", versions=(11, 19, 22))
class AveragePool(_Pool):
    """ONNX AveragePool: window sums by a ones-kernel convolution (handles dilations), divided by
    the number of window taps inside the padded input (count_include_pad) or the input itself."""

    _attrs = (*_Pool._attrs, "count_include_pad")

    def __init__(self, kernel_shape: Sequence[int], count_include_pad: int = 0, **kwargs: object) -> None:
        super().__init__(kernel_shape, **kwargs)  # type: ignore[arg-type]
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, extra, outs = self._window(x)
        n = len(self.kernel)
        conv = _CONV[n]
        ones = torch.ones((1, 1, *self.kernel), dtype=x.dtype, device=x.device)
        full = torch_pad(pads[:n] + [p + e for p, e in zip(pads[n:], extra)])
        flat = F.pad(x.reshape(-1, 1, *x.shape[2:]), full)
        sums = self._narrow(conv(flat, ones, None, self.strides, 0, self.dilations), outs)
        if self.count_include_pad:
            inside = torch.ones((1, 1, *[s + pads[i] + pads[n + i] for i, s in enumerate(x.shape[2:])]))
            inside = F.pad(inside, torch_pad([0] * n + extra))
        else:
            inside = F.pad(torch.ones((1, 1, *x.shape[2:])), full)
        inside = inside.to(dtype=x.dtype, device=x.device)
        counts = self._narrow(conv(inside, ones, None, self.strides, 0, self.dilations), outs)
        return (sums / counts.clamp_min(1)).reshape(*x.shape[:2], *sums.shape[2:])


@register("GlobalAveragePool", versions=(1, 22))
class GlobalAveragePool(OpModule):
    """ONNX GlobalAveragePool: mean over all spatial axes, kept as size 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool", versions=(1, 22))
class GlobalMaxPool(OpModule):
    """ONNX GlobalMaxPool: max over all spatial axes, kept as size 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
