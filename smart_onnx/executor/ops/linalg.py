"""Matrix products: Gemm, MatMul and Einsum."""

from __future__ import annotations

import torch

from smart_onnx.executor.base import OpModule
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry


@register("Gemm", versions=(11, 13))
class Gemm(OpModule):
    """ONNX Gemm: ``alpha * A' @ B' + beta * C`` with optional transposes and optional C."""

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, transA: int = 0, transB: int = 0) -> None:  # noqa: N803
        super().__init__()
        self.alpha, self.beta = float(alpha), float(beta)
        self.trans_a, self.trans_b = bool(transA), bool(transB)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = (a.t() if self.trans_a else a) @ (b.t() if self.trans_b else b)
        if self.alpha != 1.0:
            y = y * self.alpha
        if c is not None and self.beta != 0.0:
            y = y + (c * self.beta if self.beta != 1.0 else c)
        return y


@register("MatMul", versions=(9, 13))
class MatMul(OpModule):
    """ONNX MatMul: numpy matmul semantics (1-D operands, batch broadcasting)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


@register("Einsum", versions=(12, 28))
class Einsum(OpModule):
    """ONNX Einsum: numpy's equation syntax (implicit output, ellipsis), which torch.einsum shares."""

    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation.replace(" ", "")

    def forward(self, *operands: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, *operands)
