"""Elementwise activations and unary math (trigonometric included), PRelu, Clip, and the Softmax family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.registry import register

__all__: list[str] = []  # handlers are reached through the registry

UnaryFn = Callable[..., torch.Tensor]


class _Unary(OpModule):
    """One input, attributes with spec defaults; ``fn(x, **attrs)``."""

    fn: ClassVar[UnaryFn]
    defaults: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        unknown = sorted(set(ctx.attrs) - set(cls.defaults))
        if unknown:
            raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported: {sorted(cls.defaults) or 'none'}")
        for name, allowed in cls.choices.items():
            if name in ctx.attrs and ctx.attrs[name] not in allowed:
                raise GraphError(
                    f"{ctx.describe()} has {name}={ctx.attrs[name]!r}; supported values are {list(allowed)}"
                )
        return cls(**{**cls.defaults, **ctx.attrs})

    def __init__(self, **attrs: Any) -> None:
        super().__init__()
        self.attrs = attrs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return type(self).fn(x, **self.attrs)


def _unary(
    op_type: str,
    fn: UnaryFn,
    versions: tuple[int, ...],
    defaults: dict[str, Any] | None = None,
    choices: dict[str, tuple[str, ...]] | None = None,
) -> None:
    attrs = {"fn": staticmethod(fn), "defaults": defaults or {}, "choices": choices or {}}
    register(op_type, versions=versions)(type(op_type, (_Unary,), {**attrs, "__doc__": f"ONNX {op_type}."}))


def _selu(x: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


def _hard_sigmoid(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    return torch.clamp(alpha * x + beta, 0.0, 1.0)


def _relu(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) if x.is_floating_point() else torch.clamp_min(x, 0)


def _float_only(fn: UnaryFn) -> UnaryFn:
    """Rounding ops are the identity on integers (torch rejects some integer dtypes)."""
    return lambda x: fn(x) if x.is_floating_point() else x


_unary("Relu", _relu, (6, 13, 14))
_unary("LeakyRelu", lambda x, alpha: F.leaky_relu(x, alpha), (6, 16), {"alpha": 0.01})
_unary("Elu", lambda x, alpha: F.elu(x, alpha), (6, 22), {"alpha": 1.0})
_unary("Selu", _selu, (6, 22), {"alpha": 1.6732632423543772, "gamma": 1.0507010221481323})
_unary("Celu", lambda x, alpha: F.celu(x, alpha), (12, 28), {"alpha": 1.0})
_unary("Sigmoid", torch.sigmoid, (6, 13))
_unary("HardSigmoid", _hard_sigmoid, (6, 22), {"alpha": 0.2, "beta": 0.5})
_unary("HardSwish", lambda x: x * _hard_sigmoid(x, 1.0 / 6.0, 0.5), (14, 22))
_unary("Tanh", torch.tanh, (6, 13))
_unary("Softplus", lambda x: F.softplus(x, threshold=20.0), (1, 22))
_unary("Softsign", lambda x: x / (1 + torch.abs(x)), (1, 22))
_unary("Mish", F.mish, (18, 22))
_unary(
    "Gelu", lambda x, approximate: F.gelu(x, approximate=approximate), (20,), {"approximate": "none"},
    {"approximate": ("none", "tanh")},
)  # fmt: skip
_unary("Erf", torch.erf, (9, 13))
_unary("Exp", torch.exp, (6, 13))
_unary("Log", torch.log, (6, 13))
_unary("Sqrt", torch.sqrt, (6, 13))
_unary("Neg", torch.neg, (6, 13))
_unary("Abs", torch.abs, (6, 13))
_unary("Reciprocal", torch.reciprocal, (6, 13))
_unary("Floor", _float_only(torch.floor), (6, 13))
_unary("Ceil", _float_only(torch.ceil), (6, 13))
_unary("Round", _float_only(torch.round), (11, 22))  # torch.round is round-half-to-even, as ONNX
_unary("Sign", torch.sign, (9, 13))
_unary("Sin", torch.sin, (7, 22))
_unary("Cos", torch.cos, (7, 22))
for _name in ("Tan", "Asin", "Acos", "Atan"):
    _unary(_name, getattr(torch, _name.lower()), (7, 22))
for _name in ("Sinh", "Cosh", "Asinh", "Acosh", "Atanh"):
    _unary(_name, getattr(torch, _name.lower()), (9, 22))
_unary("ThresholdedRelu", lambda x, alpha: torch.where(x > alpha, x, torch.zeros_like(x)), (10, 22), {"alpha": 1.0})
_unary("Shrink", lambda x, bias, lambd: torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, 0 * x)),
       (9,), {"bias": 0.0, "lambd": 0.5})  # fmt: skip


@register("PRelu", versions=(9, 16))
class PRelu(OpModule):
    """ONNX PRelu: ``slope`` broadcasts to X (unidirectionally)."""

    def forward(self, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, x * slope, x)


def _clip(x: torch.Tensor, lo: torch.Tensor | float | None, hi: torch.Tensor | float | None) -> torch.Tensor:
    # max(min) order as ONNX: a min above max yields max everywhere, like torch.clamp.
    if isinstance(lo, torch.Tensor):
        lo = lo.to(x.dtype).reshape(())
    if isinstance(hi, torch.Tensor):
        hi = hi.to(x.dtype).reshape(())
    if lo is None and hi is None:
        return x
    return torch.clamp(x, lo, hi)


@register("Clip", versions=(6,))
class ClipV6(OpModule):
    """ONNX Clip-6: bounds are attributes."""

    def __init__(self, min: float = float("-inf"), max: float = float("inf")) -> None:
        super().__init__()
        self.lo, self.hi = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _clip(x, self.lo, self.hi)


@register("Clip", versions=(11, 12, 13))
class Clip(OpModule):
    """ONNX Clip-11+: optional bounds are inputs (config data, never trained)."""

    static_inputs = frozenset({1, 2})

    def forward(self, x: torch.Tensor, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None) -> torch.Tensor:
        return _clip(x, lo, hi)


def _hardmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    index = torch.argmax(x, dim=dim, keepdim=True)  # first maximum, as ONNX
    return torch.zeros_like(x).scatter_(dim, index, 1)


class _SoftmaxFamily(OpModule):
    """Softmax/LogSoftmax/Hardmax.

    Before opset 13 the input is coerced to 2-D at ``axis`` (default 1) and the op runs
    over the flattened trailing dimensions; from opset 13 it runs along ``axis`` alone
    (default -1).
    """

    fn: ClassVar[Callable[[torch.Tensor, int], torch.Tensor]]

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        unknown = sorted(set(ctx.attrs) - {"axis"})
        if unknown:
            raise GraphError(f"{ctx.describe()} has attributes {unknown}; supported: ['axis']")
        coerce = ctx.version < 13
        return cls(axis=int(ctx.attrs.get("axis", 1 if coerce else -1)), coerce_2d=coerce)

    def __init__(self, axis: int, coerce_2d: bool) -> None:
        super().__init__()
        self.axis, self.coerce_2d = axis, coerce_2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = type(self).fn
        if not self.coerce_2d:
            return fn(x, self.axis)
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        lead = 1
        for d in x.shape[:axis]:
            lead *= int(d)
        return fn(x.reshape(lead, -1), 1).reshape(x.shape)


def _softmax_family(op_type: str, fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    cls = type(op_type, (_SoftmaxFamily,), {"fn": staticmethod(fn), "__doc__": f"ONNX {op_type}."})
    register(op_type, versions=(11, 13))(cls)


_softmax_family("Softmax", lambda x, dim: torch.softmax(x, dim))
_softmax_family("LogSoftmax", lambda x, dim: torch.log_softmax(x, dim))
_softmax_family("Hardmax", _hardmax)
