"""Broadcasting binary arithmetic: Add, Sub, Mul, Div, Pow."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from smart_onnx.executor.base import OpModule
from smart_onnx.executor.registry import register


def _div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates


def _pow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.pow(a, b.to(a.dtype) if a.is_floating_point() else b).to(a.dtype)


class _Binary(OpModule):
    fn: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return type(self).fn(a, b)


def _binary(op_type: str, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], versions: tuple[int, ...]) -> None:
    cls = type(op_type, (_Binary,), {"fn": staticmethod(fn), "__doc__": f"ONNX {op_type}."})
    register(op_type, versions=versions)(cls)


_binary("Add", torch.add, (7, 13, 14))
_binary("Sub", torch.sub, (7, 13, 14))
_binary("Mul", torch.mul, (7, 13, 14))
_binary("Div", _div, (7, 13, 14))
_binary("Pow", _pow, (7, 12, 13, 15))
