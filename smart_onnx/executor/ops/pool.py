"""Pooling: MaxPool, AveragePool, LpPool and their Global variants.

Windows follow onnxruntime: output sizes from its formula (ceil_mode drops a last
window that would start past the input and left padding), padding applied
explicitly (asymmetric pads, auto_pad), so torch pooling always runs unpadded.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.conv import WindowOp, auto_pads, spatial, torch_pad
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


class _Pool(WindowOp):
    """Window geometry of MaxPool, AveragePool and LpPool."""

    _attrs = (*WindowOp._attrs, "ceil_mode")
    _required = ("kernel_shape",)

    def __init__(self, ceil_mode: int = 0, **window: Any) -> None:
        super().__init__(**window)
        self.kernel = [int(k) for k in self.kernel_shape or ()]
        n = len(self.kernel)
        self.ceil_mode = bool(ceil_mode)
        self.dilations, self.strides = spatial(self.dilations, n, 1), spatial(self.strides, n, 1)

    def _window(self, x: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
        """(ONNX pads, extra end padding so every output window exists, output sizes)."""
        n = len(self.kernel)
        if x.dim() != n + 2 or n not in _CONV:
            raise self._unsupported_rank(f"has a {n}-D kernel (1-D to 3-D supported) and an input of rank {x.dim()}")
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

    def _window_sums(self, x: torch.Tensor, pads: list[int], extra: list[int], outs: list[int]) -> torch.Tensor:
        """Window sums of ``x`` (N, C, ...) zero-padded by ``pads`` plus ``extra`` at the end.

        A ones-kernel convolution, so dilations work."""
        n = len(self.kernel)
        ones = torch.ones((1, 1, *self.kernel), dtype=x.dtype, device=x.device)
        flat = x.reshape(-1, 1, *x.shape[2:])
        padding = pads[:n] + [p + e for p, e in zip(pads[n:], extra)]
        if any(padding):  # F.pad copies even when every pad is 0
            flat = F.pad(flat, torch_pad(padding))
        sums = _CONV[n](flat, ones, None, self.strides, 0, self.dilations)
        return self._narrow(sums, outs).reshape(*x.shape[:2], *outs)

    @staticmethod
    def _narrow(y: torch.Tensor, outs: list[int]) -> torch.Tensor:
        for i, out in enumerate(outs):
            y = y.narrow(2 + i, 0, out)
        return y


@register("MaxPool", versions=(11, 12, 22))
class MaxPool(_Pool):
    """ONNX MaxPool; the optional Indices output (flat positions in the unpadded input,
    row-major or, with storage_order=1, column-major per plane) when the node asks for it."""

    _attrs = (*_Pool._attrs, "storage_order")

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        module = super().from_node(ctx)
        assert isinstance(module, MaxPool)
        module.with_indices = len(ctx.node.output) > 1 and bool(ctx.node.output[1])
        return module

    def __init__(self, storage_order: int = 0, **pool: Any) -> None:
        super().__init__(**pool)
        self.column_major, self.with_indices = bool(storage_order), False

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pads, extra, outs = self._window(x)
        n = len(self.kernel)
        dtype, sizes = x.dtype, list(x.shape[2:])
        if not x.is_floating_point():  # int8/uint8 MaxPool: exact in float32
            x = x.float()
        padding = pads[:n] + [p + e for p, e in zip(pads[n:], extra)]
        if any(padding):  # F.pad copies even when every pad is 0, and max_pool keeps its input for backward
            x = F.pad(x, torch_pad(padding), value=float("-inf"))
        if not self.with_indices:
            return self._narrow(_MAX_POOL[n](x, self.kernel, self.strides, 0, self.dilations), outs).to(dtype)
        y, idx = _MAX_POOL[n](x, self.kernel, self.strides, 0, self.dilations, return_indices=True)
        indices = self._onnx_indices(self._narrow(idx, outs), list(x.shape[2:]), sizes, pads[:n])
        return self._narrow(y, outs).to(dtype), indices

    def _onnx_indices(self, idx: torch.Tensor, padded: list[int], sizes: list[int], begins: list[int]) -> torch.Tensor:
        """torch's flat indices into each padded plane -> ONNX flat indices into the whole unpadded input."""
        coords = []
        for size in reversed(padded):
            coords.append(idx % size)
            idx = idx // size
        coords = [c - b for c, b in zip(reversed(coords), begins)]
        flat = torch.zeros_like(idx)
        order = list(reversed(range(len(sizes)))) if self.column_major else list(range(len(sizes)))
        for d in order:
            flat = flat * sizes[d] + coords[d]
        plane = 1
        for s in sizes:
            plane *= s
        offsets = torch.arange(idx.shape[0] * idx.shape[1], device=idx.device).reshape(idx.shape[:2])
        return flat + (offsets * plane).reshape(*idx.shape[:2], *([1] * len(sizes)))


@register("AveragePool", versions=(11, 19, 22))
class AveragePool(_Pool):
    """ONNX AveragePool: window sums by a ones-kernel convolution (handles dilations), divided by
    the number of window taps inside the padded input (count_include_pad) or the input itself."""

    _attrs = (*_Pool._attrs, "count_include_pad")

    def __init__(self, count_include_pad: int = 0, **pool: Any) -> None:
        super().__init__(**pool)
        self.count_include_pad = bool(count_include_pad)
        self._divisors: dict[tuple, torch.Tensor] = {}  # (spatial shape, dtype, device) -> taps per window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, extra, outs = self._window(x)
        key = (tuple(x.shape[2:]), x.dtype, str(x.device))
        if key not in self._divisors:
            n = len(self.kernel)
            ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
            if self.count_include_pad:  # the explicit padding counts, the ceil_mode overhang does not
                ones, pads_in = F.pad(ones, torch_pad(pads), value=1.0), [0] * (2 * n)
            else:
                pads_in = pads
            self._divisors[key] = self._window_sums(ones, pads_in, extra, outs).clamp_min(1)
        return self._window_sums(x, pads, extra, outs) / self._divisors[key]


@register("LpPool", versions=(11, 18, 22))
class LpPool(_Pool):
    """ONNX LpPool: the p-norm of each window (zero padding adds nothing)."""

    _attrs = (*_Pool._attrs, "p")

    def __init__(self, p: int = 2, **pool: Any) -> None:
        super().__init__(**pool)
        self.p = int(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, extra, outs = self._window(x)
        return self._window_sums(x.abs() ** self.p, pads, extra, outs) ** (1.0 / self.p)


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


@register("GlobalLpPool", versions=(2, 22))
class GlobalLpPool(OpModule):
    """ONNX GlobalLpPool: the p-norm over all spatial axes, kept as size 1."""

    def __init__(self, p: int = 2) -> None:
        super().__init__()
        self.p = int(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() ** self.p).sum(dim=tuple(range(2, x.dim())), keepdim=True) ** (1.0 / self.p)
