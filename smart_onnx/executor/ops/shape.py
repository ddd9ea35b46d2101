"""Shape and layout ops: Reshape, Transpose, Flatten, (Un)Squeeze, Expand, Tile, Concat, Split,
Shape, Size, Identity, Dropout.

Also holds the small helpers the other non-compute op families share: :class:`Op` and
:class:`VersionedOp` (construction errors that name the node), :class:`AttributeValueError`,
:func:`axis` and :func:`choice`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.registry import register

__all__ = ["AttributeValueError", "Op", "VersionedOp", "axis", "choice"]

# since_versions that only widened the type list (no semantic change for tensors we run).
_V1_TO_25 = (1, 13, 21, 23, 24, 25)


class AttributeValueError(ValueError):
    """Raised by a handler's ``__init__`` for an attribute value it does not implement."""

    def __init__(self, name: str, value: Any, supported: str) -> None:
        super().__init__(name)
        self.name, self.value, self.supported = name, value, supported


class Op(OpModule):
    """OpModule whose construction errors name the node, the attribute and what is supported.

    Subclasses override :meth:`create` when ``__init__`` needs more than the attributes
    (the since_version, the number of outputs, subgraphs).
    """

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        """Build the handler with :meth:`create`, turning attribute problems into GraphError."""
        try:
            return cls.create(ctx)
        except AttributeValueError as e:
            raise GraphError(
                f"{ctx.describe()} (version {ctx.version}) has {e.name}={e.value!r}, supported: {e.supported}"
            ) from e
        except TypeError as e:
            raise GraphError(f"{ctx.describe()} has an unsupported attribute or lacks a required one ({e})") from e

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        """The handler for ``ctx``; default: the attributes as keyword arguments (spec names)."""
        return cls(**ctx.attrs)


class VersionedOp(Op):
    """An Op whose ``__init__`` also takes ``version`` (the since_version) as a keyword."""

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        return cls(**ctx.attrs, version=ctx.version)


def axis(a: int, rank: int) -> int:
    """``a`` in ``[-rank, rank)`` as a non-negative axis (RuntimeError, reported with the node, otherwise)."""
    if not -rank <= a < rank:
        raise RuntimeError(f"axis {a} is out of range for a rank-{rank} input")
    return a + rank if a < 0 else a


def choice(name: str, value: Any, supported: Sequence[Any]) -> Any:
    """``value`` if it is one of ``supported``; AttributeValueError otherwise."""
    if value not in supported:
        raise AttributeValueError(name, value, ", ".join(repr(s) for s in supported))
    return value


@register("Reshape", versions=(5, 13, 14, 19, 21, 23, 24, 25))
class Reshape(Op):
    """ONNX Reshape: 0 copies the input dim (unless ``allowzero``), -1 is inferred."""

    static_inputs = frozenset({1})

    def __init__(self, allowzero: int = 0) -> None:
        super().__init__()
        self.allowzero = choice("allowzero", allowzero, (0, 1))

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = self.ints(shape)
        if not self.allowzero:
            dims = [x.shape[i] if d == 0 and i < x.dim() else d for i, d in enumerate(dims)]
        return x.reshape(dims)


@register("Transpose", versions=_V1_TO_25)
class Transpose(Op):
    """ONNX Transpose; no ``perm`` reverses the axes."""

    def __init__(self, perm: list[int] | None = None) -> None:
        super().__init__()
        self.perm = perm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.perm if self.perm is not None else list(range(x.dim() - 1, -1, -1)))


@register("Flatten", versions=(11, 13, 21, 23, 24, 25))
class Flatten(Op):
    """ONNX Flatten: 2-D ``[prod(dims[:axis]), prod(dims[axis:])]``."""

    def __init__(self, axis: int = 1) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.axis + x.dim() if self.axis < 0 else self.axis
        if not 0 <= a <= x.dim():
            raise RuntimeError(f"axis {self.axis} is out of range for a rank-{x.dim()} input")
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))


class _AxesOp(VersionedOp):
    """Squeeze/Unsqueeze: ``axes`` is an attribute before version 13 and input 1 from then on."""

    static_inputs = frozenset({1})

    def __init__(self, version: int, axes: list[int] | None = None) -> None:
        super().__init__()
        self.version, self.axes = version, axes

    def _axes(self, given: torch.Tensor | None) -> list[int] | None:
        return self.axes if self.version < 13 else self.ints(given)


@register("Squeeze", versions=(11, 13, 21, 23, 24, 25))
class Squeeze(_AxesOp):
    """ONNX Squeeze; no axes removes every dim of size 1."""

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        given = self._axes(axes)
        if given is None:
            return x.reshape([d for d in x.shape if d != 1])
        dims = sorted({axis(a, x.dim()) for a in given})
        if any(x.shape[d] != 1 for d in dims):
            raise RuntimeError(f"cannot squeeze axes {given} of shape {list(x.shape)}: a dim is not 1")
        return x.reshape([d for i, d in enumerate(x.shape) if i not in dims])


@register("Unsqueeze", versions=(11, 13, 21, 23, 24, 25))
class Unsqueeze(_AxesOp):
    """ONNX Unsqueeze; axes index the output."""

    def forward(self, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        given = self._axes(axes) or []
        rank = x.dim() + len(given)
        dims = sorted(axis(a, rank) for a in given)
        if len(set(dims)) != len(dims):
            raise RuntimeError(f"Unsqueeze axes {given} repeat an axis")
        shape = list(x.shape)
        for d in dims:
            shape.insert(d, 1)
        return x.reshape(shape)


@register("Expand", versions=(8, 13))
class Expand(Op):
    """ONNX Expand: bidirectional (numpy) broadcast of the input against ``shape``."""

    static_inputs = frozenset({1})

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return x.expand(torch.broadcast_shapes(x.shape, tuple(self.ints(shape))))


@register("Tile", versions=(6, 13))
class Tile(Op):
    """ONNX Tile."""

    static_inputs = frozenset({1})

    def forward(self, x: torch.Tensor, repeats: torch.Tensor) -> torch.Tensor:
        return x.repeat(self.ints(repeats)) if x.dim() else x.clone()


@register("Concat", versions=(11, 13))
class Concat(Op):
    """ONNX Concat (negative ``axis`` allowed)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=axis(self.axis, xs[0].dim()))


@register("Split", versions=(11, 13, 18))
class Split(Op):
    """ONNX Split: sizes from the ``split`` attribute (v11), input 1 (v13+), ``num_outputs``
    (v18, the last chunk may be smaller) or equal parts, one per output."""

    static_inputs = frozenset({1})

    def __init__(
        self, version: int, outputs: int, axis: int = 0, split: list[int] | None = None, num_outputs: int | None = None
    ) -> None:
        super().__init__()
        if num_outputs is not None and num_outputs != outputs:
            raise AttributeValueError("num_outputs", num_outputs, f"the node's number of outputs ({outputs})")
        self.version, self.outputs, self.axis, self.split = version, outputs, axis, split

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        return cls(**ctx.attrs, version=ctx.version, outputs=len(ctx.node.output))

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        a = axis(self.axis, x.dim())
        sizes = self.split if self.version < 13 else self.ints(split)
        if sizes is None:
            chunk = -(-x.shape[a] // self.outputs)  # ceil: v18 lets the last chunk be smaller
            parts = torch.split(x, chunk, dim=a)
            if len(parts) != self.outputs:
                raise RuntimeError(f"dim {x.shape[a]} of axis {a} cannot be split into {self.outputs} outputs")
            return parts
        if sum(sizes) != x.shape[a]:
            raise RuntimeError(f"split sizes {sizes} do not add up to dim {x.shape[a]} of axis {a}")
        return torch.split(x, sizes, dim=a)


@register("Shape", versions=(1, 13, 15, 19, 21, 23, 24, 25))
class Shape(Op):
    """ONNX Shape as int64; ``start``/``end`` (v15+) slice it, clamped to the rank."""

    def __init__(self, start: int = 0, end: int | None = None) -> None:
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(list(x.shape)[self.start : self.end], dtype=torch.int64, device=x.device)


@register("Size", versions=(1, 13, 19, 21, 23, 24, 25))
class Size(Op):
    """ONNX Size: element count as an int64 scalar."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


@register("Identity", versions=(1, 13, 14, 16, 19, 21, 23, 24, 25))
class Identity(Op):
    """ONNX Identity (tensors only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("Dropout", versions=(10, 12, 13, 22))
class Dropout(Op):
    """ONNX Dropout at inference: the input unchanged, and an all-True mask if asked for.

    The executor is deterministic on purpose (the dense model is the search's teacher), so
    ``training_mode`` is not honoured. Version 10's mask is all False, as onnxruntime writes it.
    """

    static_inputs = frozenset({1, 2})

    def __init__(self, version: int, outputs: int, ratio: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        self.outputs, self.mask_value = outputs, version >= 12

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        return cls(**ctx.attrs, version=ctx.version, outputs=len(ctx.node.output))

    def forward(
        self, x: torch.Tensor, ratio: torch.Tensor | None = None, training_mode: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.outputs < 2:
            return x
        return x, torch.full(x.shape, self.mask_value, dtype=torch.bool, device=x.device)
