"""Seeded random torch architectures for the fuzzer.

:func:`random_architecture` draws a small CNN / token-mixer from one seed: convs with odd
widths, grouped and depthwise convs, residual adds over several layers, split/concat at
odd offsets, SE gates, transposed convs, MatMul FFN blocks over tokens, an optional
NHWC wrapper (permute in, and out when the output is a feature map) and an optional
flatten -> Gemm head. The same seed always gives the same module, weights and input.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from devkit.zoo import _finish

__all__ = ["Arch", "random_architecture"]

_ACTS: tuple[Callable[[], nn.Module], ...] = (nn.ReLU, nn.SiLU, nn.Hardswish, nn.GELU, nn.Identity)


@dataclass
class Arch:
    """A drawn architecture: the module (eval mode), one example input and a readable summary."""

    module: nn.Module
    example: torch.Tensor
    summary: list[str]


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _SplitConcat(nn.Module):
    """Split channels at an odd offset, transform one part, concatenate (maybe swapped)."""

    def __init__(self, first: int, body: nn.Module, swap: bool) -> None:
        super().__init__()
        self.first, self.body, self.swap = first, body, swap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.first], x[:, self.first :]
        b = self.body(b)
        return torch.cat([b, a] if self.swap else [a, b], dim=1)


class _SE(nn.Module):
    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class _TokenFFN(nn.Module):
    """Feature map -> tokens (B, HW, C) -> Linear/GELU/Linear (MatMul + Add) + residual -> feature map."""

    def __init__(self, c: int, hidden: int, norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(c) if norm else nn.Identity()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.fc2(nn.functional.gelu(self.fc1(self.norm(t))))
        return t.transpose(1, 2).reshape(b, c, h, w)


class _Head(nn.Module):
    def __init__(self, pool: bool, features: int, hidden: int | None, classes: int) -> None:
        super().__init__()
        self.pool = pool
        layers: list[nn.Module] = [nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes)] if hidden \
            else [nn.Linear(features, classes)]
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool:
            x = x.mean(dim=(2, 3))
        return self.fc(torch.flatten(x, 1))


class _NHWC(nn.Module):
    def __init__(self, body: nn.Module, permute_out: bool) -> None:
        super().__init__()
        self.body, self.permute_out = body, permute_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x.permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1) if self.permute_out else y


class _Builder:
    """Keeps the running channel count and spatial size while blocks are drawn."""

    def __init__(self, rng: random.Random, channels: int, size: int) -> None:
        self.rng, self.c, self.size = rng, channels, size
        self.summary: list[str] = []

    def width(self) -> int:
        return self.rng.randint(3, 19)

    def act(self) -> nn.Module:
        return self.rng.choice(_ACTS)()

    def conv(self, cout: int | None = None, groups: int = 1, k: int | None = None, stride: int = 1) -> nn.Module:
        k = k or self.rng.choice((1, 3))
        cout = cout or self.width()
        if groups > 1:
            cout = max(groups, cout // groups * groups)
        bn = self.rng.random() < 0.5
        layers = [nn.Conv2d(self.c, cout, k, stride, k // 2, groups=groups, bias=not bn or self.rng.random() < 0.3)]
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(self.act())
        self.summary.append(f"conv{k}x{k} {self.c}->{cout} g{groups} s{stride}{' bn' if bn else ''}")
        self.c = cout
        if stride == 2:
            self.size = (self.size + 1) // 2
        return nn.Sequential(*layers)

    def grouped(self) -> nn.Module:
        divisors = [g for g in range(2, self.c + 1) if self.c % g == 0]
        if not divisors:
            return self.conv()
        g = self.rng.choice(divisors)
        if g == self.c and self.rng.random() < 0.7:  # depthwise, sometimes with a channel multiplier
            return self.conv(cout=self.c * self.rng.choice((1, 1, 2)), groups=g, k=3)
        return self.conv(cout=g * self.rng.randint(1, 4), groups=g)

    def residual(self) -> nn.Module:
        c, size = self.c, self.size
        depth = self.rng.randint(1, 3)
        body = [self.conv() for _ in range(depth - 1)]
        body.append(self.conv(cout=c))
        self.summary.append(f"residual over {depth}")
        self.c, self.size = c, size
        return _Residual(nn.Sequential(*body))

    def split_concat(self) -> nn.Module:
        if self.c < 3:
            return self.conv()
        first = self.rng.randrange(1, self.c, 2) if self.c > 2 else 1
        total = self.c
        self.c = total - first
        body = self.conv()
        swap = self.rng.random() < 0.5
        self.summary.append(f"split at {first} of {total}, concat{' swapped' if swap else ''}")
        self.c = first + self.c
        return _SplitConcat(first, body, swap)

    def se(self) -> nn.Module:
        r = self.rng.randint(1, max(1, self.c // 2))
        self.summary.append(f"se {self.c}/{r}")
        return _SE(self.c, r)

    def transposed(self) -> nn.Module:
        cout = self.width()
        up = self.size <= 6 and self.rng.random() < 0.6
        k, s, p = (2, 2, 0) if up else (3, 1, 1)
        layers = [nn.ConvTranspose2d(self.c, cout, k, s, p), self.act()]
        self.summary.append(f"convT{k} {self.c}->{cout} s{s}")
        self.c, self.size = cout, self.size * s
        return nn.Sequential(*layers)

    def downsample(self) -> nn.Module:
        if self.size <= 3:
            return self.conv(k=1)
        return self.conv(k=3, stride=2)

    def ffn(self) -> nn.Module:
        hidden = self.rng.randint(2, 3 * self.c)
        norm = self.rng.random() < 0.5
        self.summary.append(f"token ffn {self.c}->{hidden}{' ln' if norm else ''}")
        return _TokenFFN(self.c, hidden, norm)


_BLOCKS = ("conv", "grouped", "residual", "split_concat", "se", "transposed", "downsample", "ffn")


def random_architecture(seed: int, batch: int = 2) -> Arch:
    """Draw one architecture and its input from ``seed`` (weights and BN statistics seeded too)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cin, size = rng.choice((1, 3, 4, 5)), rng.choice((5, 6, 8, 9))
    b = _Builder(rng, cin, size)
    blocks: list[nn.Module] = [b.conv()]
    for _ in range(rng.randint(2, 6)):
        blocks.append(getattr(b, rng.choice(_BLOCKS))())
    head = rng.random() < 0.6
    if head:
        pool = rng.random() < 0.5
        features = b.c if pool else b.c * b.size * b.size
        hidden = rng.choice((None, rng.randint(3, 17)))
        classes = rng.randint(2, 11)
        blocks.append(_Head(pool, features, hidden, classes))
        b.summary.append(f"{'pool+' if pool else ''}flatten -> gemm {features}->{hidden or ''}->{classes}")
    module: nn.Module = nn.Sequential(*blocks)
    nhwc = rng.random() < 0.25
    shape = (batch, cin, size, size)
    if nhwc:
        module = _NHWC(module, permute_out=not head)
        shape = (batch, size, size, cin)
        b.summary.insert(0, "nhwc wrapper" + ("" if head else " (permute out)"))
    _finish(module, None, seed + 1)  # non-trivial BN statistics, so a skipped or mis-folded BN shows
    return Arch(module.eval(), torch.randn(shape, generator=torch.Generator().manual_seed(seed)), b.summary)

