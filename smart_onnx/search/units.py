"""Prunable units of weight tensors, and how a per-unit mask maps back onto elements.

Three kinds, all pure torch (no ONNX):

- ``BlockUnits``: a grid of blocks over one weight tensor (block mode).
- ``NMUnits``: groups of M consecutive weights along one axis, N kept per group (N:M mode).
- ``ChannelUnits``: units that each cover some indices along one axis of several tensors
  (channel-coupling groups, channel mode).

Units are numbered in row-major (C) order of their grid. ``expand`` is differentiable,
so a soft mask ``p`` over units gives the masked weight ``W * units.expand(p)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from smart_onnx.errors import InternalError

__all__ = ["BlockUnits", "ChannelTarget", "ChannelUnits", "NMUnits"]


def _interleave(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x for pair in zip(a, b) for x in pair]


def _check_shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    out = tuple(int(d) for d in shape)
    if any(d < 1 for d in out):
        raise InternalError(f"{what} {out} must have positive dimensions")
    return out


class BlockUnits:
    """A grid of blocks over a weight tensor; each block is one unit.

    ``block_shape`` is given in the tensor's own axis order (for a Conv weight
    ``[O, I, kH, kW]`` a 16x8x1x1 block is ``(16, 8, 1, 1)``; callers permute for other
    layouts). A block dimension larger than the tensor's is clipped to it. Where a tensor
    dimension is not a multiple of the block's, the last block along that axis is a
    partial edge block: still a unit, with its true (smaller) cost, so costs always sum
    to the tensor's size.

    Args:
        weight_shape: Shape of the weight tensor.
        block_shape: Block extent per axis, same rank as ``weight_shape``.
    """

    def __init__(self, weight_shape: Sequence[int], block_shape: Sequence[int]) -> None:
        self.weight_shape = _check_shape(weight_shape, "weight shape")
        block = _check_shape(block_shape, "block shape")
        if len(block) != len(self.weight_shape):
            raise InternalError(f"block shape {block} and weight shape {self.weight_shape} differ in rank")
        self.block_shape = tuple(min(b, d) for b, d in zip(block, self.weight_shape))
        self.grid_shape = tuple(-(-d // b) for d, b in zip(self.weight_shape, self.block_shape))
        self._padded = tuple(g * b for g, b in zip(self.grid_shape, self.block_shape))

    @property
    def num_units(self) -> int:
        return math.prod(self.grid_shape)

    def costs(self) -> torch.Tensor:
        """Elements per block, float64 ``[num_units]`` (edge blocks count only their real elements)."""
        c = torch.ones((), dtype=torch.float64)
        for d, b, g in zip(self.weight_shape, self.block_shape, self.grid_shape):
            extent = torch.full((g,), float(b), dtype=torch.float64)
            extent[-1] = d - (g - 1) * b
            c = c[..., None] * extent
        return c.reshape(-1)

    def expand(self, p: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-block value ``[num_units]`` to the weight's shape (differentiable).

        Args:
            p: One value per unit, in row-major grid order.

        Returns:
            A tensor of ``weight_shape`` (a view into a padded buffer when edge blocks are partial).
        """
        if p.numel() != self.num_units:
            raise InternalError(f"block mask has {p.numel()} values for {self.num_units} blocks")
        grid = _interleave(self.grid_shape, [1] * len(self.grid_shape))
        out = p.reshape(grid).expand(_interleave(self.grid_shape, self.block_shape)).reshape(self._padded)
        if self._padded != self.weight_shape:
            out = out[tuple(slice(0, d) for d in self.weight_shape)]
        return out

    def apply(self, weight: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``weight * expand(p)`` without building a weight-sized mask when blocks tile the weight.

        The per-block values are cast to the weight's dtype and device first and broadcast
        over a blocked view, which saves a full mask (and its gradient) per layer.
        """
        p = p.to(weight)
        if self._padded != self.weight_shape:
            return weight * self.expand(p)
        blocked = weight.reshape(_interleave(self.grid_shape, self.block_shape))
        grid = _interleave(self.grid_shape, [1] * len(self.grid_shape))
        return (blocked * p.reshape(grid)).reshape(self.weight_shape)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum a weight-shaped tensor over each block, e.g. ``reduce(w ** 2)`` is the squared block norm.

        Args:
            x: A tensor of ``weight_shape``.

        Returns:
            ``[num_units]``, in the same order as ``expand`` consumes.
        """
        if tuple(x.shape) != self.weight_shape:
            raise InternalError(f"tensor of shape {tuple(x.shape)} given to blocks of a {self.weight_shape} weight")
        pad = [amount for d, q in zip(reversed(self.weight_shape), reversed(self._padded)) for amount in (0, q - d)]
        x = torch.nn.functional.pad(x, pad) if any(pad) else x
        x = x.reshape(_interleave(self.grid_shape, self.block_shape))
        return x.sum(dim=tuple(range(1, 2 * len(self.grid_shape), 2))).reshape(-1)


class NMUnits:
    """N:M groups: every M consecutive weights along ``axis`` form a group that keeps N.

    The weight is viewed with ``axis`` moved last and split into groups ``[G, M]``. When
    the axis length is not a multiple of M, its last ``len % M`` weights belong to no
    group and stay dense (``expand`` gives them 1), which is what N:M hardware does with
    a ragged tail.

    Args:
        weight_shape: Shape of the weight tensor.
        n: Weights kept per group.
        m: Group size.
        axis: The axis the groups run along (the input-channel axis).
    """

    def __init__(self, weight_shape: Sequence[int], n: int, m: int, axis: int) -> None:
        self.weight_shape = _check_shape(weight_shape, "weight shape")
        if not 0 < n <= m:
            raise InternalError(f"N:M pattern needs 0 < N <= M, got {n}:{m}")
        if not -len(self.weight_shape) <= axis < len(self.weight_shape):
            raise InternalError(f"axis {axis} is out of range for a weight of shape {self.weight_shape}")
        self.n, self.m, self.axis = n, m, axis % len(self.weight_shape)
        self._moved = tuple(torch.empty(self.weight_shape, device="meta").movedim(self.axis, -1).shape)
        self._full = self._moved[-1] // m * m

    @property
    def num_groups(self) -> int:
        return math.prod(self._moved[:-1]) * (self._full // self.m)

    @property
    def num_units(self) -> int:
        return self.num_groups * self.m

    @property
    def dense_tail(self) -> int:
        """Weights per line along ``axis`` that are in no group (stay dense)."""
        return self._moved[-1] - self._full

    def to_groups(self, x: torch.Tensor) -> torch.Tensor:
        """The grouped weights ``[G, M]`` of a weight-shaped tensor (the dense tail left out)."""
        if tuple(x.shape) != self.weight_shape:
            raise InternalError(f"tensor of shape {tuple(x.shape)} given to N:M groups of a {self.weight_shape} weight")
        return x.movedim(self.axis, -1)[..., : self._full].reshape(self.num_groups, self.m)

    def expand(self, p: torch.Tensor) -> torch.Tensor:
        """Map a group mask ``[G, M]`` back to the weight's shape (differentiable; tail = 1).

        Args:
            p: ``[G, M]`` mask, as laid out by ``to_groups``.

        Returns:
            A tensor of ``weight_shape``.
        """
        if tuple(p.shape) != (self.num_groups, self.m):
            raise InternalError(f"N:M mask has shape {tuple(p.shape)}, expected {(self.num_groups, self.m)}")
        out = p.reshape(*self._moved[:-1], self._full)
        if self.dense_tail:
            out = torch.cat([out, out.new_ones(*self._moved[:-1], self.dense_tail)], dim=-1)
        return out.movedim(-1, self.axis)


@dataclass(frozen=True)
class ChannelTarget:
    """One tensor touched by channel units: which indices along ``axis`` each unit covers.

    Attributes:
        name: The tensor's name (e.g. its ONNX initializer name); several targets may share a
            name (a weight touched along its output axis and its input axis).
        shape: The tensor's shape.
        axis: The channel axis.
        units: ``{unit id: indices along axis}``; an index covered by no unit stays 1.
    """

    name: str
    shape: tuple[int, ...]
    axis: int
    units: Mapping[int, Sequence[int]] = field(default_factory=dict)


class ChannelUnits:
    """Units (e.g. channel-coupling groups) that each cover channels of several tensors.

    ``expand`` turns a ``[num_units]`` mask into one multiplicative mask per tensor name:
    the product over that name's targets of the unit value broadcast along the target's
    axis. Masks are broadcastable to the tensor (size 1 on untouched axes), not materialised.
    Within one target an index belongs to at most one unit; coupling analysis merges
    units that share a channel, so an overlap is a bug.

    Args:
        num_units: Number of units.
        targets: The tensors and the indices each unit covers in them.
    """

    def __init__(self, num_units: int, targets: Iterable[ChannelTarget]) -> None:
        self.num_units = int(num_units)
        self.targets = tuple(targets)
        self._owner: list[torch.Tensor] = []
        for t in self.targets:
            length = t.shape[t.axis]
            owner = torch.full((length,), -1, dtype=torch.long)
            for unit, indices in t.units.items():
                if not 0 <= unit < self.num_units:
                    raise InternalError(f"unit {unit} of tensor {t.name!r} is out of range [0, {self.num_units})")
                idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
                if bool((idx < 0).any() | (idx >= length).any()):
                    raise InternalError(f"unit {unit} covers an index outside axis {t.axis} of {t.name!r} ({length})")
                if bool((owner[idx] >= 0).any()) or idx.unique().numel() != idx.numel():
                    raise InternalError(f"two units cover the same index of {t.name!r} along axis {t.axis}")
                owner[idx] = unit
            self._owner.append(owner)

    def costs(self) -> torch.Tensor:
        """Tensor elements each unit covers, float64 ``[num_units]``.

        Each target counts on its own, so an element covered through two axes counts twice;
        analysis may pass MAC-based costs to the search instead.
        """
        c = torch.zeros(self.num_units, dtype=torch.float64)
        for t, owner in zip(self.targets, self._owner):
            per_index = math.prod(t.shape) / t.shape[t.axis]
            covered = owner[owner >= 0]
            c.index_add_(0, covered, torch.full(covered.shape, per_index, dtype=torch.float64))
        return c

    def expand(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-tensor multiplicative masks from a per-unit mask (differentiable).

        Args:
            p: ``[num_units]`` mask.

        Returns:
            ``{tensor name: mask broadcastable to that tensor's shape}``.
        """
        masks: dict[str, torch.Tensor] = {}
        for t, values in self._target_values(p):
            view = [1] * len(t.shape)
            view[t.axis] = t.shape[t.axis]
            mask = values.reshape(view)
            masks[t.name] = masks[t.name] * mask if t.name in masks else mask
        return masks

    def sums(self, p: torch.Tensor) -> dict[str, float]:
        """The sum of every tensor's ``expand`` mask over the whole tensor, without broadcasting it.

        A mask is an outer product of per-axis vectors, so its sum is the product of the
        vectors' sums (times the sizes of untouched axes): O(channels), not O(elements).

        Args:
            p: ``[num_units]`` mask (a hard 0/1 mask gives kept element counts).

        Returns:
            ``{tensor name: sum of its mask broadcast to its shape}``.
        """
        axes: dict[str, dict[int, torch.Tensor]] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for t, values in self._target_values(p):
            per_axis = axes.setdefault(t.name, {})
            per_axis[t.axis] = per_axis[t.axis] * values if t.axis in per_axis else values
            shapes[t.name] = t.shape
        out: dict[str, float] = {}
        for name, per_axis in axes.items():
            total = float(math.prod(d for a, d in enumerate(shapes[name]) if a not in per_axis))
            for values in per_axis.values():
                total *= float(values.sum())
            out[name] = total
        return out

    def _target_values(self, p: torch.Tensor) -> Iterator[tuple[ChannelTarget, torch.Tensor]]:
        """Each target with the mask values along its axis (1 where no unit covers an index)."""
        if p.shape != (self.num_units,):
            raise InternalError(f"channel mask has shape {tuple(p.shape)}, expected ({self.num_units},)")
        # A trailing 1 is the value of indices no unit covers: owner -1 picks it.
        padded = torch.cat([p, p.new_ones(1)])
        for t, owner in zip(self.targets, self._owner):
            yield t, padded[owner.to(p.device)]
