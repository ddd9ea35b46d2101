"""Comparison, boolean and selection ops: Equal, Greater, Less, GreaterOrEqual, LessOrEqual, Not,
And, Or, Xor, Where, Max, Min, Sum, Mean, Mod, IsNaN, IsInf.

Comparisons return bool; Max/Min/Sum/Mean take any number of broadcasting inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import torch

from smart_onnx.executor.ops.elementwise import _binary
from smart_onnx.executor.ops.shape import Op, choice
from smart_onnx.executor.registry import register

__all__: list[str] = []

_binary("Equal", torch.eq, (11, 13, 19))
_binary("Greater", torch.gt, (9, 13))
_binary("Less", torch.lt, (9, 13))
_binary("GreaterOrEqual", torch.ge, (12, 16))
_binary("LessOrEqual", torch.le, (12, 16))
_binary("And", torch.logical_and, (7,))
_binary("Or", torch.logical_or, (7,))
_binary("Xor", torch.logical_xor, (7,))


@register("Not", versions=(1,))
class Not(Op):
    """ONNX Not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logical_not(x)


@register("Where", versions=(9, 16))
class Where(Op):
    """ONNX Where (broadcasting)."""

    def forward(self, cond: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(cond.bool(), x, y)


_Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class _Variadic(Op):
    fn: ClassVar[_Fn]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return functools.reduce(type(self).fn, xs)


def _variadic(op_type: str, fn: _Fn, versions: tuple[int, ...]) -> None:
    cls = type(op_type, (_Variadic,), {"fn": staticmethod(fn), "__doc__": f"ONNX {op_type} (variadic, broadcasting)."})
    register(op_type, versions=versions)(cls)


_variadic("Max", torch.maximum, (8, 12, 13))
_variadic("Min", torch.minimum, (8, 12, 13))
_variadic("Sum", torch.add, (8, 13))


@register("Mean", versions=(8, 13))
class Mean(_Variadic):
    """ONNX Mean (variadic, broadcasting)."""

    fn = staticmethod(torch.add)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return super().forward(*xs) / len(xs)


@register("Mod", versions=(10, 13, 28))
class Mod(Op):
    """ONNX Mod: ``fmod=0`` takes the divisor's sign (floor), ``fmod=1`` the dividend's (C fmod)."""

    def __init__(self, fmod: int = 0) -> None:
        super().__init__()
        self.fmod = choice("fmod", fmod, (0, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.fmod(a, b) if self.fmod else torch.remainder(a, b)


@register("IsNaN", versions=(9, 13, 20))
class IsNaN(Op):
    """ONNX IsNaN."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.isnan(x)


@register("IsInf", versions=(10, 20))
class IsInf(Op):
    """ONNX IsInf with ``detect_positive`` / ``detect_negative``."""

    def __init__(self, detect_negative: int = 1, detect_positive: int = 1) -> None:
        super().__init__()
        self.negative = choice("detect_negative", detect_negative, (0, 1))
        self.positive = choice("detect_positive", detect_positive, (0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.negative and self.positive:
            return torch.isinf(x)
        if self.negative:
            return torch.isneginf(x)
        if self.positive:
            return torch.isposinf(x)
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)
