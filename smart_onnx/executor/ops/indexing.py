"""Indexing ops: Slice, Gather, GatherElements, GatherND, ScatterND, NonZero, TopK, CumSum, Pad."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from smart_onnx.executor.ops.shape import Op, VersionedOp, axis, choice
from smart_onnx.executor.registry import register

__all__: list[str] = []


def _wrap(indices: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    """Negative indices count from the end; torch wants int64."""
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


_END_OF_AXIS = (2**31 - 1, 2**63 - 1)


def _clamp(v: int, lo: int, hi: int) -> int:
    return min(max(v, lo), hi)


def slice_tensor(
    x: torch.Tensor, starts: list[int], ends: list[int], axes: list[int] | None, steps: list[int] | None
) -> torch.Tensor:
    """ONNX Slice semantics: negative indices, out-of-range clamping (INT64_MAX), negative steps."""
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise RuntimeError(f"Slice starts {starts}, ends {ends}, axes {axes}, steps {steps} differ in length")
    index: list[slice] = [slice(None)] * x.dim()
    reversed_axes: list[tuple[int, torch.Tensor]] = []
    for start, end, a, step in zip(starts, ends, axes, steps):
        a, dim = axis(a, x.dim()), x.shape[axis(a, x.dim())]
        if end in _END_OF_AXIS:  # numpy's None, also for negative steps (as onnxruntime reads it)
            end = dim if step > 0 else -dim - 1
        start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
        if step > 0:
            # steps beyond the dim pick one element; torch overflows on INT64_MAX ones
            index[a] = slice(_clamp(start, 0, dim), _clamp(end, 0, dim), min(step, max(dim, 1)))
        elif step < 0:
            # torch has no negative-step slicing: gather the positions instead.
            first, stop = _clamp(start, 0, dim - 1), _clamp(end, -1, dim - 1)
            positions = range(first, stop, step) if dim else range(0)
            reversed_axes.append((a, torch.tensor(positions, dtype=torch.int64, device=x.device)))
        else:
            raise RuntimeError(f"Slice step on axis {a} is 0")
    y = x[tuple(index)]
    for a, positions in reversed_axes:
        y = y.index_select(a, positions)
    return y


@register("Slice", versions=(1, 10, 11, 13))
class Slice(VersionedOp):
    """ONNX Slice: attributes in version 1, inputs (starts, ends, axes, steps) from version 10."""

    static_inputs = frozenset({1, 2, 3, 4})

    def __init__(
        self,
        version: int,
        starts: list[int] | None = None,
        ends: list[int] | None = None,
        axes: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.version, self.starts, self.ends, self.axes = version, starts, ends, axes

    def forward(
        self,
        x: torch.Tensor,
        starts: torch.Tensor | None = None,
        ends: torch.Tensor | None = None,
        axes: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.version < 10:
            return slice_tensor(x, self.starts or [], self.ends or [], self.axes, None)
        return slice_tensor(x, self.ints(starts) or [], self.ints(ends) or [], self.ints(axes), self.ints(steps))


class _AxisOp(Op):
    def __init__(self, axis: int = 0) -> None:
        super().__init__()
        self.axis = axis


@register("Gather", versions=(11, 13))
class Gather(_AxisOp):
    """ONNX Gather: output shape ``data[:axis] + indices + data[axis+1:]``."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        a = axis(self.axis, x.dim())
        picked = x.index_select(a, _wrap(indices, x.shape[a]).reshape(-1))
        return picked.reshape(x.shape[:a] + indices.shape + x.shape[a + 1 :])


@register("GatherElements", versions=(11, 13))
class GatherElements(_AxisOp):
    """ONNX GatherElements (torch.gather with negative indices)."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        a = axis(self.axis, x.dim())
        return torch.gather(x, a, _wrap(indices, x.shape[a]))


def _nd_index(data_shape: torch.Size, indices: torch.Tensor) -> list[torch.Tensor]:
    """Per-dimension index tensors from an ``[..., k]`` GatherND/ScatterND index tensor."""
    return [_wrap(indices[..., j], data_shape[j]) for j in range(indices.shape[-1])]


@register("GatherND", versions=(11, 12, 13))
class GatherND(Op):
    """ONNX GatherND with ``batch_dims`` (version 12+)."""

    def __init__(self, batch_dims: int = 0) -> None:
        super().__init__()
        self.batch_dims = batch_dims

    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        b = self.batch_dims
        batch = math.prod(x.shape[:b])
        flat_x = x.reshape((batch,) + x.shape[b:])
        flat_i = indices.reshape(batch, -1, indices.shape[-1])
        rows = torch.arange(batch, device=x.device).unsqueeze(1)
        picked = flat_x[(rows, *_nd_index(flat_x.shape[1:], flat_i))]
        return picked.reshape(indices.shape[:-1] + x.shape[b + indices.shape[-1] :])


@register("ScatterND", versions=(11, 13, 16, 18))
class ScatterND(VersionedOp):
    """ONNX ScatterND; ``reduction`` add/mul from version 16, max/min from version 18."""

    _REDUCE = {"mul": "prod", "max": "amax", "min": "amin"}

    def __init__(self, version: int, reduction: str = "none") -> None:
        super().__init__()
        allowed = ("none",) + (("add", "mul") if version >= 16 else ()) + (("max", "min") if version >= 18 else ())
        self.reduction = choice("reduction", reduction, allowed)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        k = indices.shape[-1]
        rest = x.shape[k:]
        flat_x = x.reshape((-1,) + rest)
        coords = _nd_index(x.shape, indices.reshape(-1, k))
        rows = coords[0]  # row-major position in the first k dims
        for j in range(1, k):
            rows = rows * x.shape[j] + coords[j]
        flat_u = updates.reshape((-1,) + rest)
        if self.reduction == "none":
            out = flat_x.index_copy(0, rows, flat_u)
        elif self.reduction == "add":
            out = flat_x.index_add(0, rows, flat_u)
        else:
            where = rows.reshape((-1,) + (1,) * len(rest)).expand(flat_u.shape)
            out = flat_x.scatter_reduce(0, where, flat_u, self._REDUCE[self.reduction], include_self=True)
        return out.reshape(x.shape)


@register("NonZero", versions=(9, 13))
class NonZero(Op):
    """ONNX NonZero: int64 ``[rank, count]`` coordinates in row-major order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(x).T.contiguous()


@register("TopK", versions=(11, 24))
class TopK(Op):
    """ONNX TopK; ties go to the lower index, as the spec asks (a stable sort does that)."""

    static_inputs = frozenset({1})

    def __init__(self, axis: int = -1, largest: int = 1, sorted: int = 1) -> None:  # noqa: A002 (spec name)
        super().__init__()
        self.axis, self.largest = axis, choice("largest", largest, (0, 1))
        choice("sorted", sorted, (0, 1))  # unsorted output may come in any order: sorted is one

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, count = axis(self.axis, x.dim()), int(k.reshape(-1)[0])
        values, indices = torch.sort(x, dim=a, descending=bool(self.largest), stable=True)
        return values.narrow(a, 0, count), indices.narrow(a, 0, count)


@register("CumSum", versions=(11, 14))
class CumSum(Op):
    """ONNX CumSum with ``exclusive`` and ``reverse``; integer sums stay in the input dtype."""

    static_inputs = frozenset({1})

    def __init__(self, exclusive: int = 0, reverse: int = 0) -> None:
        super().__init__()
        self.exclusive, self.reverse = choice("exclusive", exclusive, (0, 1)), choice("reverse", reverse, (0, 1))

    def forward(self, x: torch.Tensor, axis_: torch.Tensor) -> torch.Tensor:
        a = axis(int(axis_.reshape(-1)[0]), x.dim())
        y = x.flip(a) if self.reverse else x
        out = torch.cumsum(y, dim=a).to(x.dtype)
        if self.exclusive:
            zero = torch.zeros_like(out.narrow(a, 0, min(1, out.shape[a])))
            out = torch.cat([zero, out.narrow(a, 0, max(out.shape[a] - 1, 0))], dim=a)
        return out.flip(a) if self.reverse else out


def _pad_positions(size: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source positions of an axis padded by ``before``/``after`` in edge, reflect or wrap mode."""
    if size == 0:
        raise RuntimeError(f"cannot pad an empty axis in {mode} mode")
    pos = torch.arange(-before, size + after, device=device)
    if mode == "edge":
        return pos.clamp(0, size - 1)
    if mode == "wrap":
        return pos.remainder(size)
    if size == 1:
        return torch.zeros_like(pos)
    period = 2 * (size - 1)  # reflect: mirror without repeating the border element
    pos = pos.abs().remainder(period)
    return torch.where(pos >= size, period - pos, pos)


@register("Pad", versions=(11, 13, 18, 19, 21, 23, 24, 25))
class Pad(VersionedOp):
    """ONNX Pad: ``pads`` input (negative values crop), optional ``constant_value``, ``axes`` (v18+),
    modes constant, reflect, edge and (v19+) wrap."""

    static_inputs = frozenset({1, 2, 3})

    def __init__(self, version: int, mode: str = "constant") -> None:
        super().__init__()
        modes = ("constant", "reflect", "edge") + (("wrap",) if version >= 19 else ())
        self.mode = choice("mode", mode, modes)

    def forward(
        self,
        x: torch.Tensor,
        pads: torch.Tensor,
        constant_value: torch.Tensor | None = None,
        axes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        amounts = self.ints(pads)
        dims = [axis(a, x.dim()) for a in self.ints(axes) or range(x.dim())]
        if len(amounts) != 2 * len(dims):
            raise RuntimeError(f"Pad has {len(amounts)} pads for {len(dims)} axes")
        fill = 0 if constant_value is None else constant_value.reshape(-1)[0].item()
        grow = [0] * (2 * x.dim())  # F.pad's order: (before, after) of the last axis first
        for a, before, after in zip(dims, amounts[: len(dims)], amounts[len(dims) :]):
            x = x.narrow(a, max(-before, 0), x.shape[a] - max(-before, 0) - max(-after, 0))  # crop first
            before, after = max(before, 0), max(after, 0)
            if self.mode == "constant":
                grow[2 * (x.dim() - 1 - a)], grow[2 * (x.dim() - 1 - a) + 1] = before, after
            elif before or after:
                x = x.index_select(a, _pad_positions(x.shape[a], before, after, self.mode, x.device))
        # One constant_pad_nd rather than a concatenation per axis: its backward is a view of the gradient, where
        # a concatenation's allocates and fills a zero tensor per axis (EfficientNet-Lite0's search step 2-5 % the
        # shorter on an idle machine, 15 % beside another run: docs/benchmarks.md, "The teacher in onnxruntime").
        return F.pad(x, grow, value=fill) if any(grow) else x
