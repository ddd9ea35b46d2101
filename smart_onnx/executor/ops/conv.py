"""Convolutions: Conv and ConvTranspose (1-D, 2-D, 3-D), plus the window attributes and padding helpers pooling
shares (:class:`WindowOp`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.registry import register

__all__ = ["AUTO_PADS", "WindowOp", "auto_pads", "spatial", "torch_pad"]

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def spatial(values: Sequence[int] | None, n: int, default: int) -> list[int]:
    """A per-spatial-axis attribute, or ``n`` copies of ``default`` when absent."""
    return [int(v) for v in values] if values else [default] * n


def auto_pads(
    auto_pad: str, sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int] | None
) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]`` for the input's spatial ``sizes``.

    ``kernel`` is the window extent the padding must cover (dilated for Conv; onnxruntime
    uses the undilated kernel for pooling, so the pool handlers pass that).
    """
    n = len(sizes)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad == "NOTSET":
        return [int(p) for p in pads] if pads else [0] * (2 * n)
    begins, ends = [], []
    for size, k, s in zip(sizes, kernel, strides):
        total = max(0, (-(-size // s) - 1) * s + k - size)
        begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX ``[b1, b2, ..., e1, e2, ...]`` as F.pad's ``(b_last, e_last, ..., b1, e1)``."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [int(pads[i]), int(pads[n + i])]
    return out


class WindowOp(OpModule):
    """What ONNX's convolutions and pooling share: the sliding-window attributes, and their checks.

    ``auto_pad``, ``dilations``, ``kernel_shape``, ``pads`` and ``strides`` mean the same in Conv,
    ConvTranspose, MaxPool, AveragePool and LpPool. A subclass adds its own attributes to ``_attrs``
    (its ``__init__`` takes them, and passes the window's on), and names those ONNX requires in
    ``_required``.
    """

    _attrs: tuple[str, ...] = ("auto_pad", "dilations", "kernel_shape", "pads", "strides")
    _required: tuple[str, ...] = ()

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        """Refuses attributes outside ``_attrs``, a missing required one and an unknown ``auto_pad``."""
        unknown = sorted(set(ctx.attrs) - set(cls._attrs))
        if unknown:
            raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported: {sorted(cls._attrs)}")
        for name in cls._required:
            if name not in ctx.attrs:
                raise GraphError(f"{ctx.describe()} has no {name} attribute, which ONNX requires")
        auto_pad = ctx.attrs.get("auto_pad", "NOTSET")
        if auto_pad not in AUTO_PADS:
            raise GraphError(f"{ctx.describe()} has auto_pad={auto_pad!r}; supported values are {list(AUTO_PADS)}")
        return cls(**ctx.attrs)

    def __init__(
        self,
        auto_pad: str = "NOTSET",
        dilations: Sequence[int] | None = None,
        kernel_shape: Sequence[int] | None = None,
        pads: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.auto_pad, self.kernel_shape = auto_pad, kernel_shape
        self.dilations, self.pads, self.strides = dilations, pads, strides

    def _unsupported_rank(self, what: str) -> GraphError:
        """The error for an input (or kernel) of a rank outside 1-D to 3-D: ``what`` says what was found."""
        return GraphError(f"node {getattr(self, 'onnx_node', '?')!r} ({type(self).__name__}) {what}")


class _ConvBase(WindowOp):
    _attrs = (*WindowOp._attrs, "group")

    def __init__(self, group: int = 1, **window: Any) -> None:
        super().__init__(**window)
        self.group = int(group)  # the kernel's shape is the weight's

    def _geometry(self, x: torch.Tensor, w: torch.Tensor) -> tuple[int, list[int], list[int], list[int]]:
        n = x.dim() - 2
        if n not in _CONV:
            raise self._unsupported_rank(f"supports 1-D to 3-D inputs, got an input of rank {x.dim()}")
        return n, list(w.shape[2:]), spatial(self.strides, n, 1), spatial(self.dilations, n, 1)


@register("Conv", versions=(11, 22))
class Conv(_ConvBase):
    """ONNX Conv: weights ``[O, I/group, k...]``; asymmetric/auto padding applied explicitly."""

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        n, kernel, strides, dilations = self._geometry(x, w)
        if n == 2 and self.group > 1 and self.group == x.shape[1] and x.device.type == "cpu":
            # A depthwise convolution's forward and backward on the CPU take a third to a half of their NCHW time
            # in channels-last memory (the layout is not the semantics: later ops read it as any tensor), and
            # EfficientNet-Lite0's search step a tenth less (docs/benchmarks.md, "The teacher in onnxruntime").
            x = x.contiguous(memory_format=torch.channels_last)
        extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        pads = auto_pads(self.auto_pad, list(x.shape[2:]), extent, strides, self.pads)
        if pads[:n] == pads[n:]:
            padding = pads[:n]
        else:
            x, padding = F.pad(x, torch_pad(pads)), [0] * n
        return _CONV[n](x, w, b, strides, padding, dilations, self.group)


@register("ConvTranspose", versions=(11, 22))
class ConvTranspose(_ConvBase):
    """ONNX ConvTranspose: weights ``[I, O/group, k...]``.

    Runs the unpadded transposed convolution, then crops ``pads`` and appends
    ``output_padding`` with F.pad, which handles asymmetric pads and any output_padding.
    """

    _attrs = (*_ConvBase._attrs, "output_padding", "output_shape")

    def __init__(
        self,
        output_padding: Sequence[int] | None = None,
        output_shape: Sequence[int] | None = None,
        **conv: Any,
    ) -> None:
        super().__init__(**conv)
        self.output_padding, self.output_shape = output_padding, output_shape

    def _pads(self, sizes: list[int], kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
        n = len(sizes)
        adj = spatial(self.output_padding, n, 0)
        full = [(i - 1) * s + (k - 1) * d + 1 + a for i, s, k, d, a in zip(sizes, strides, kernel, dilations, adj)]
        if self.output_shape:
            target = list(self.output_shape)[-n:]
        elif self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = [i * s for i, s in zip(sizes, strides)]
        else:
            return spatial(self.pads, 2 * n, 0) if self.auto_pad == "NOTSET" else [0] * (2 * n)
        # onnxruntime: an odd total crops the extra pixel at the end only for SAME_UPPER; a target
        # larger than the full output is zero-filled at the end (negative padding).
        totals = [f - t for f, t in zip(full, target)]
        begins = [0 if t <= 0 else t // 2 if self.auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
        return begins + [t - b for t, b in zip(totals, begins)]

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        n, kernel, strides, dilations = self._geometry(x, w)
        pads = self._pads(list(x.shape[2:]), kernel, strides, dilations)
        adj = spatial(self.output_padding, n, 0)
        y = _CONV_T[n](x, w, None, strides, 0, 0, self.group, dilations)
        # negative F.pad values crop: remove pads[b] at the start, pads[e] - adj at the end
        crop = [-p for p in pads[:n]] + [a - p for p, a in zip(pads[n:], adj)]
        if any(crop):
            y = F.pad(y, torch_pad(crop))
        if b is not None:
            y = y + b.reshape(1, -1, *([1] * n))
        return y
