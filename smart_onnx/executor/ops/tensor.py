"""Dtype conversion and tensor creation: Cast, CastLike, Constant, ConstantOfShape, Range, EyeLike, Trilu."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import torch

from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.shape import AttributeValueError, Op, choice
from smart_onnx.executor.registry import register
from smart_onnx.model import constant_node_value

__all__ = ["torch_dtype"]

_P = onnx.TensorProto
_DTYPES: dict[int, torch.dtype] = {
    _P.FLOAT: torch.float32,
    _P.DOUBLE: torch.float64,
    _P.FLOAT16: torch.float16,
    _P.BFLOAT16: torch.bfloat16,
    _P.INT8: torch.int8,
    _P.INT16: torch.int16,
    _P.INT32: torch.int32,
    _P.INT64: torch.int64,
    _P.UINT8: torch.uint8,
    _P.UINT16: torch.uint16,
    _P.UINT32: torch.uint32,
    _P.UINT64: torch.uint64,
    _P.BOOL: torch.bool,
}


def torch_dtype(onnx_type: int, attribute: str = "to") -> torch.dtype:
    """The torch dtype of an ONNX ``TensorProto.DataType`` value.

    Raises:
        AttributeValueError: float8/float4/int4/string/complex types, which the executor does not run.
    """
    if onnx_type not in _DTYPES:
        name = _P.DataType.Name(onnx_type) if onnx_type in _P.DataType.values() else str(onnx_type)
        supported = ", ".join(_P.DataType.Name(t) for t in _DTYPES)
        raise AttributeValueError(attribute, name, supported)
    return _DTYPES[onnx_type]


@register("Cast", versions=(9, 13, 19, 21, 23, 24, 25, 28))
class Cast(Op):
    """ONNX Cast. ``saturate`` and ``round_mode`` only concern float8/float4 targets, which are rejected."""

    def __init__(self, to: int, saturate: int = 1, round_mode: str = "up") -> None:
        super().__init__()
        self.to = torch_dtype(to)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.to)


@register("CastLike", versions=(15, 19, 21, 23, 24, 25))
class CastLike(Op):
    """ONNX CastLike: only the dtype of input 1 is read, so it never becomes a Parameter."""

    static_inputs = frozenset({1})

    def __init__(self, saturate: int = 1, round_mode: str = "up") -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)


def _tensor(value: Any, name: str) -> torch.Tensor:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise AttributeValueError(name, f"a {array.dtype} tensor", "numeric and bool tensors")
    return torch.from_numpy(np.array(array, copy=True))


@register("Constant", versions=(11, 12, 13, 19, 21, 23, 24, 25))
class Constant(Op):
    """ONNX Constant (the loader lifts most of them to initializers already)."""

    _FORMS = ("value", "sparse_value", "value_float", "value_floats", "value_int", "value_ints")

    def __init__(self, value: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("value", _tensor(value, "value"))

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        # The loader's decoding, so a Constant means the same whether it is lifted or run.
        value = constant_node_value(ctx.node) if len(ctx.attrs) == 1 else None
        if value is None:
            raise AttributeValueError("value", sorted(ctx.attrs), "exactly one of " + ", ".join(cls._FORMS))
        return cls(value)

    def forward(self) -> torch.Tensor:
        return self.value


@register("ConstantOfShape", versions=(9, 20, 21, 23, 24, 25))
class ConstantOfShape(Op):
    """ONNX ConstantOfShape: ``value`` is a one-element tensor (default float32 0)."""

    static_inputs = frozenset({0})

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        fill = _tensor(np.zeros(1, np.float32) if value is None else value, "value")
        if fill.numel() != 1:
            raise AttributeValueError("value", f"a tensor of shape {list(fill.shape)}", "a one-element tensor")
        self.register_buffer("fill", fill.reshape(()))

    def forward(self, shape: torch.Tensor) -> torch.Tensor:
        return self.fill.to(shape.device).expand(self.ints(shape)).clone()


@register("Range", versions=(11, 27))
class Range(Op):
    """ONNX Range: ``start + i * delta`` for ``i < max(ceil((limit - start) / delta), 0)``.

    float16/bfloat16 are computed in float32 unless ``stash_type`` (v27) is 0.
    """

    static_inputs = frozenset({0, 1, 2})

    def __init__(self, stash_type: int = 1) -> None:
        super().__init__()
        self.stash = choice("stash_type", stash_type, (0, 1))

    def forward(self, start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        s, l, d = start.item(), limit.item(), delta.item()
        if d == 0:
            raise RuntimeError("Range delta is 0")
        if start.is_floating_point():
            n = max(math.ceil((l - s) / d), 0)
            work = torch.float32 if self.stash and start.dtype in (torch.float16, torch.bfloat16) else start.dtype
        else:
            n = max(-((s - l) // d), 0)  # exact integer ceil division
            work = start.dtype
        steps = torch.arange(n, dtype=work, device=start.device)
        return (start.to(work) + steps * delta.to(work)).to(start.dtype)


@register("EyeLike", versions=(9, 22))
class EyeLike(Op):
    """ONNX EyeLike: ones on diagonal ``k`` of a 2-D tensor shaped like the input."""

    def __init__(self, dtype: int | None = None, k: int = 0) -> None:
        super().__init__()
        self.dtype = None if dtype is None else torch_dtype(dtype, "dtype")
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise RuntimeError(f"EyeLike takes a 2-D input, got shape {list(x.shape)}")
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        cols = torch.arange(x.shape[1], device=x.device)
        return (cols - rows == self.k).to(self.dtype or x.dtype)


@register("Trilu", versions=(14,))
class Trilu(Op):
    """ONNX Trilu: keep the upper (``upper=1``) or lower triangle above/below diagonal ``k``."""

    static_inputs = frozenset({1})

    def __init__(self, upper: int = 1) -> None:
        super().__init__()
        self.upper = choice("upper", upper, (0, 1))

    def forward(self, x: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        diagonal = 0 if k is None else int(k.item())
        return torch.triu(x, diagonal) if self.upper else torch.tril(x, diagonal)
