"""Pruning spaces: the units of one pruning mode over a whole model.

A space numbers every unit of the model in one vector (so one soft top-k ranks all
units of all layers at once), knows each unit's cost in weights and in MACs, turns a
per-unit mask into executor ``transforms`` (masked weights), scores units from weights
and activations, and converts a hard mask into what the rewriter takes.

* :class:`BlockSpace`: blocks of prunable layers' weights (block mode).
* :class:`ChannelSpace`: channels of the analysis's coupling groups (channel mode).
* :class:`NMSpace`: N:M groups along each weight's input axis (N:M mode; ranked per group).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from smart_onnx.errors import ConstraintError
from smart_onnx.executor import ChannelWeights
from smart_onnx.graph import Analysis, CouplingGroup, PrunableLayer, Role
from smart_onnx.search.units import BlockUnits, ChannelTarget, ChannelUnits, NMUnits

__all__ = ["BlockSpace", "ChannelSpace", "NMSpace", "PruningSpace", "parse_block"]

Transforms = dict[str, Callable[[torch.Tensor], torch.Tensor]]
# Stats: layer name -> mean square of its input activation per input position [in_axis size], or absent.
ActivationStats = Mapping[str, torch.Tensor]

# Scales, offsets and embedding columns are masked too, so a removed channel of a residual stream is zero
# everywhere (not a bias the feature loss would compare); BatchNorm's statistics are not (a variance of 0).
_MASKED_ROLES = (Role.PRODUCER_WEIGHT, Role.PRODUCER_BIAS, Role.DEPTHWISE_WEIGHT, Role.DEPTHWISE_BIAS,
                 Role.CONSUMER_WEIGHT, Role.AFFINE_CONST, Role.EMBEDDING)
_WEIGHT_ROLES = (Role.PRODUCER_WEIGHT, Role.DEPTHWISE_WEIGHT, Role.CONSUMER_WEIGHT)


def parse_block(text: str) -> tuple[int, ...]:
    """``"16x8x1x1"`` -> (16, 8, 1, 1): output x input channels x kernel positions."""
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise ConstraintError(f"block shape {text!r} is not OxI[xKhxKw] (e.g. 16x8x1x1)") from None
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ConstraintError(f"block shape {text!r} needs at least two positive sizes (e.g. 16x8 or 16x8x1x1)")
    return dims


def _importance(weight: torch.Tensor, layer: PrunableLayer, stats: ActivationStats | None) -> torch.Tensor:
    """Per-element importance: w^2 times the mean square of the input activation it multiplies."""
    w2 = weight.detach().double() ** 2
    act = None if stats is None else stats.get(layer.name)
    if act is not None and act.numel() == weight.shape[layer.in_axis]:
        view = [1] * weight.dim()
        view[layer.in_axis] = -1
        w2 = w2 * act.double().reshape(view)
    return w2


def _unit_groups(sizes: Sequence[int]) -> torch.Tensor:
    """Group index of every unit, for groups of the given sizes laid out one after another."""
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))


def _standardise(scores: torch.Tensor) -> torch.Tensor:
    std = scores.std() if scores.numel() > 1 else torch.ones((), dtype=scores.dtype)
    return (scores - scores.mean()) / (std if float(std) > 0 else 1.0)


class PruningSpace:
    """Common interface; see the module docstring."""

    num_units: int
    unit_group: torch.Tensor  # [num_units] index of the layer (block) or coupling group (channel) of each unit
    group_names: list[str]
    # Whether a pruned unit zeroes whole activation channels (channel mode), not only weights.
    masks_activations: bool = False

    @property
    def scored_layers(self) -> tuple[PrunableLayer, ...]:
        """The layers whose weights the scores read: those ``activation_stats`` must measure."""
        raise NotImplementedError

    def costs(self, kind: str) -> torch.Tensor:
        """[num_units] float64 cost per unit: ``"params"`` (weights) or ``"macs"``."""
        raise NotImplementedError

    def transforms(self, mask: torch.Tensor) -> Transforms:
        """Executor transforms applying a per-unit mask (soft or hard) to the weights."""
        raise NotImplementedError

    def statistics(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Node -> the weights (mean 1 over the channel axis) its means are taken with under ``mask``: the nodes
        that normalise over pruned channels (channel mode's LayerNorms), none in the other modes."""
        return {}

    def kept(self, keep: torch.Tensor) -> tuple[float, float]:
        """Exact (weights, MACs) of the prunable layers that survive a hard mask.

        Unit costs may overlap (a channel's cost counts its producer's and its
        consumers' slices); this counts each weight element once.
        """
        raise NotImplementedError

    def totals(self) -> tuple[float, float]:
        """(weights, MACs) of the prunable layers before pruning."""
        return self.kept(torch.ones(self.num_units, dtype=torch.bool))

    def unit_importance(self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None) -> torch.Tensor:
        """[num_units] summed element importance (w^2, times activation^2 when ``stats``)."""
        raise NotImplementedError

    def initial_scores(
        self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None, layer_norm: float = 0.5
    ) -> torch.Tensor:
        """SMART's starting scores: log importance per unit cost, normalised per layer, standardised.

        ``layer_norm`` is how much of each layer's mean log importance is removed: 1 starts
        every layer at the same sparsity (the search then learns the cross-layer distribution),
        0 ranks raw importance globally (large layers of small weights start heavily pruned).
        """
        density = self.unit_importance(weights, stats) / self.costs("params")
        log_d = torch.log(density + 1e-30 + 1e-12 * float(density.max()))
        groups = self.unit_group
        count = torch.zeros(len(self.group_names), dtype=log_d.dtype).index_add_(0, groups, torch.ones_like(log_d))
        mean = torch.zeros_like(count).index_add_(0, groups, log_d) / count.clamp(min=1)
        return _standardise(log_d - layer_norm * mean[groups]).float()

    def magnitude_scores(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Global magnitude baseline: the L2 norm of each unit's weights."""
        return self.unit_importance(weights, None).sqrt().float()

    def element_units(self, weight: str) -> torch.Tensor | None:
        """Each element's unit (int64, the weight's shape, indices into the flat mask) where every element of
        ``weight`` is in exactly one unit of its own layer, so the refit may re-choose kept units within the
        layer (see search/refit.py); None where units are not that (channels span layers, N:M fixes a count
        per group), or the weight has no units."""
        return None


# --------------------------------------------------------------------------- block


@dataclass
class _LayerBlocks:
    layer: PrunableLayer
    units: BlockUnits
    start: int
    end: int


class BlockSpace(PruningSpace):
    """Blocks of every given layer's weight; ``block`` is in canonical O x I x k... order.

    A block with fewer dims than a weight is padded with 1s (``16x8`` on a conv is
    ``16x8x1x1``); extra dims are dropped (``16x8x1x1`` on a Gemm is ``16x8``). Edge
    blocks of non-divisible dims are partial units with their true cost.
    """

    def __init__(self, layers: Sequence[PrunableLayer], block: Sequence[int] | Mapping[str, Sequence[int]]) -> None:
        self.layers: list[_LayerBlocks] = []
        seen: set[str] = set()
        start = 0
        for layer in layers:
            if layer.weight in seen:  # a tied weight: one set of units
                continue
            seen.add(layer.weight)
            canon = tuple(block[layer.name] if isinstance(block, Mapping) else block)
            rank = len(layer.weight_shape)
            canon = (canon + (1,) * rank)[:rank]
            tensor_block = [1] * rank
            for pos, axis in enumerate(layer.canonical_axes):
                tensor_block[axis] = canon[pos]
            units = BlockUnits(layer.weight_shape, tensor_block)
            self.layers.append(_LayerBlocks(layer, units, start, start + units.num_units))
            start += units.num_units
        self.num_units = start
        self.group_names = [lb.layer.name for lb in self.layers]
        self.unit_group = _unit_groups([lb.end - lb.start for lb in self.layers])

    @property
    def scored_layers(self) -> tuple[PrunableLayer, ...]:
        return tuple(lb.layer for lb in self.layers)

    def costs(self, kind: str) -> torch.Tensor:
        parts = []
        for lb in self.layers:
            c = lb.units.costs().double()
            if kind == "macs":
                c = c * ((lb.layer.macs or 0) / math.prod(lb.layer.weight_shape))
            parts.append(c)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def transforms(self, mask: torch.Tensor) -> Transforms:
        out: Transforms = {}
        for lb in self.layers:
            out[lb.layer.weight] = lambda w, u=lb.units, p=mask[lb.start:lb.end]: u.apply(w, p)
        return out

    def kept(self, keep: torch.Tensor) -> tuple[float, float]:
        k = keep.cpu().bool()
        return float(self.costs("params")[k].sum()), float(self.costs("macs")[k].sum())

    def unit_importance(self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None) -> torch.Tensor:
        parts = [lb.units.reduce(_importance(weights[lb.layer.weight], lb.layer, stats)) for lb in self.layers]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def element_units(self, weight: str) -> torch.Tensor | None:
        for lb in self.layers:
            if lb.layer.weight == weight:
                return lb.units.expand(torch.arange(lb.start, lb.end, dtype=torch.float64)).long()
        return None

    def export(self, keep: torch.Tensor) -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
        """Hard mask -> {initializer: (keep grid, block shape in tensor order)} for ``apply_block_masks``."""
        return {
            lb.layer.weight: (keep[lb.start:lb.end].cpu().numpy().astype(bool).reshape(lb.units.grid_shape),
                              tuple(lb.units.block_shape))
            for lb in self.layers
        }


# --------------------------------------------------------------------------- channel


class ChannelSpace(PruningSpace):
    """Channels of the prunable coupling groups; unit = one group channel.

    Masking the producers' output slices and every consumer's input slice makes a zero
    channel equivalent to a removed one (a BatchNorm shift on a dead channel is never read).
    """

    masks_activations = True

    def __init__(
        self, analysis: Analysis, groups: Sequence[CouplingGroup], tensor_shapes: Mapping[str, tuple[int, ...]]
    ) -> None:
        self.groups = [g for g in groups if g.frozen is None]
        self.offsets: list[int] = []
        targets: list[ChannelTarget] = []
        roles: list[Role] = []
        # (tensor, axis, position array, unit array, layer) for importance
        self._weight_slices: list[tuple[str, int, np.ndarray, np.ndarray, PrunableLayer]] = []
        layers = {lay.name: lay for lay in analysis.layers}
        start = 0
        for g in self.groups:
            self.offsets.append(start)
            for s in g.slices:
                if s.role not in _MASKED_ROLES:
                    continue
                src, pos = s.index_map.pairs(np.arange(g.channels))
                units: dict[int, list[int]] = {}
                for c, p in zip(src.tolist(), pos.tolist()):
                    units.setdefault(start + c, []).append(p)
                targets.append(ChannelTarget(s.tensor, tuple(tensor_shapes[s.tensor]), s.axis, units))
                roles.append(s.role)
                if s.role in _WEIGHT_ROLES and s.node in layers:
                    self._weight_slices.append((s.tensor, s.axis, pos, src + start, layers[s.node]))
            start += g.channels
        self.num_units = start
        self.units = ChannelUnits(start, targets)
        self._accounted = ChannelUnits(start, [t for t, role in zip(targets, roles) if role in _WEIGHT_ROLES])
        self._layer_of_weight = {lay.weight: lay for lay in analysis.layers if lay.weight in
                                 {t.name for t in self._accounted.targets}}
        self.group_names = [f"group {g.id}" for g in self.groups]
        self.unit_group = _unit_groups([g.channels for g in self.groups])
        self._statistics = ChannelUnits(start, _statistics_targets(self.groups, self.offsets, analysis.shapes))

    @property
    def scored_layers(self) -> tuple[PrunableLayer, ...]:
        return tuple({layer.name: layer for *_, layer in self._weight_slices}.values())

    def costs(self, kind: str) -> torch.Tensor:
        per = [g.channel_macs if kind == "macs" else g.channel_params for g in self.groups]
        flat = [float(x) for p in per for x in p]
        return torch.tensor(flat, dtype=torch.float64).clamp(min=1e-9)

    def transforms(self, mask: torch.Tensor) -> Transforms:
        out: dict = {name: (lambda w, m=m: w * m.to(w)) for name, m in self.units.expand(mask).items()}
        for node, weights in self.statistics(mask).items():
            out[ChannelWeights(node)] = lambda x, w=weights: w.to(x)
        return out

    def statistics(self, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for node, m in self._statistics.expand(mask).items():
            out[node] = m * (m.numel() / m.sum().clamp_min(1e-12))  # a mean-1 weighting: mean(x * w) = mean_kept(x)
        return out

    def keep_every_axis(self, keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Keep the best channel of any weight axis a mask would empty (a Split part feeding a conv, say).

        Minimums per group cannot see that a group's channels are split among several
        consumers; a tensor axis with no channel left is not a valid model.
        """
        out = keep.clone()
        for target in self._accounted.targets:
            units = torch.tensor(sorted(target.units), dtype=torch.long)
            covered = sum(len(v) for v in target.units.values())
            if covered == target.shape[target.axis] and not bool(out[units].any()):
                out[units[int(torch.argmax(scores[units]))]] = True
        return out

    def kept(self, keep: torch.Tensor) -> tuple[float, float]:
        params = macs = 0.0
        shapes = {t.name: t.shape for t in self._accounted.targets}
        # Per-axis sums, not element masks: this runs at every step of the hardening bisection.
        for name, kept in self._accounted.sums(keep.cpu().to(torch.float64)).items():
            numel = math.prod(shapes[name])
            params += kept
            layer = self._layer_of_weight.get(name)
            macs += (layer.macs or 0) * kept / numel if layer else 0.0
        return params, macs

    def unit_importance(self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None) -> torch.Tensor:
        total = torch.zeros(self.num_units, dtype=torch.float64)
        for tensor, axis, pos, unit, layer in self._weight_slices:
            imp = _importance(weights[tensor], layer, stats)
            per_position = imp.sum(dim=[d for d in range(imp.dim()) if d != axis])
            total.index_add_(0, torch.as_tensor(unit), per_position[torch.as_tensor(pos)])
        return total

    def export(self, keep: torch.Tensor) -> dict[int, np.ndarray]:
        """Hard mask -> {group id: kept channel indices} for ``apply_channel_masks``."""
        out = {}
        for g, start in zip(self.groups, self.offsets):
            kept = np.nonzero(keep[start:start + g.channels].cpu().numpy())[0]
            if len(kept) < g.channels:
                out[g.id] = kept
        return out


def _statistics_targets(groups: Sequence[CouplingGroup], offsets: Sequence[int],
                        shapes: Mapping[str, tuple[int, ...]]) -> list[ChannelTarget]:
    """One target per node that takes a mean over group channels, named by the node, shaped to broadcast
    against its input (positions of frozen groups, in no unit, weigh 1)."""
    targets = []
    for g, start in zip(groups, offsets):
        for s in g.statistics:
            src, pos = s.index_map.pairs(np.arange(g.channels))
            units: dict[int, list[int]] = {}
            for c, p in zip(src.tolist(), pos.tolist()):
                units.setdefault(start + c, []).append(p)
            rank = len(shapes.get(s.tensor, ())) or s.axis + 1
            shape = tuple(s.axis_size if a == s.axis else 1 for a in range(rank))
            targets.append(ChannelTarget(s.node, shape, s.axis, units))
    return targets


# --------------------------------------------------------------------------- N:M


class NMSpace(PruningSpace):
    """N:M groups along each layer's input axis; every group keeps exactly N of M.

    A unit is one weight of a group. Units are numbered layer after layer, each layer's
    ``[G, M]`` groups flattened row by row, so a mask is one flat vector as in every space;
    :meth:`per_layer` gives back each layer's ``[G, M]`` view for the per-group top-k.
    """

    def __init__(self, layers: Sequence[PrunableLayer], n: int, m: int) -> None:
        if not 0 < n < m:
            raise ConstraintError(f"N:M pattern {n}:{m} needs 0 < N < M")
        self.n, self.m = n, m
        self.layers: list[tuple[PrunableLayer, NMUnits]] = []
        seen: set[str] = set()
        for layer in layers:
            if layer.weight in seen or layer.weight_shape[layer.in_axis] < m:
                continue
            seen.add(layer.weight)
            self.layers.append((layer, NMUnits(layer.weight_shape, n, m, layer.in_axis)))
        self._sizes = [units.num_units for _, units in self.layers]
        self.num_units = sum(self._sizes)
        self.group_names = [layer.name for layer, _ in self.layers]

    @property
    def unit_group(self) -> torch.Tensor:
        """The layer of every unit, built when asked and not kept: one int64 per grouped weight (194 MiB on a
        ResNet-50, held through the search), and N:M's ranking never asks (every group ranks itself)."""
        return _unit_groups(self._sizes)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    @property
    def scored_layers(self) -> tuple[PrunableLayer, ...]:
        return tuple(layer for layer, _ in self.layers)

    def per_layer(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's ``[G, M]`` view of a flat per-unit vector (views: gradients flow back to ``flat``).

        One ``split``, not a slice per layer: each slice's backward pass writes its layer's gradient into zeros
        the size of ``flat`` and adds that up (on a ResNet-50, 53 layers x 97 MiB per mask and per score vector,
        each step); split's backward concatenates the layers' gradients once.
        """
        return [part.view(units.num_groups, self.m) for part, (_, units) in zip(flat.split(self._sizes), self.layers)]

    def _flat(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in parts]) if parts else torch.zeros(0)

    def costs(self, kind: str) -> torch.Tensor:
        parts = []
        for layer, units in self.layers:
            per = (layer.macs or 0) / math.prod(layer.weight_shape) if kind == "macs" else 1.0
            parts.append(torch.full((units.num_units,), float(per), dtype=torch.float64))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def kept(self, keep: torch.Tensor) -> tuple[float, float]:
        """(weights, MACs) of the grouped weights a hard mask keeps (a ragged tail, in no group, is not counted)."""
        k = keep.cpu().bool()
        return float(self.costs("params")[k].sum()), float(self.costs("macs")[k].sum())

    def unit_importance(self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None) -> torch.Tensor:
        return self._flat([units.to_groups(_importance(weights[layer.weight], layer, stats))
                           for layer, units in self.layers]).double()

    def initial_scores(
        self, weights: Mapping[str, torch.Tensor], stats: ActivationStats | None, layer_norm: float = 0.5
    ) -> torch.Tensor:
        """Log of |w| times activation RMS, standardised per layer (each group ranks only its own M weights,
        so ``layer_norm`` has nothing to balance and is not used)."""
        return self._flat([_standardise(torch.log(units.to_groups(_importance(weights[layer.weight], layer, stats))
                                                  + 1e-30)).float() for layer, units in self.layers])

    def magnitude_scores(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._flat([units.to_groups(weights[layer.weight].detach().abs()).float()
                           for layer, units in self.layers])

    def transforms(self, mask: torch.Tensor) -> Transforms:
        out: Transforms = {}
        for (layer, units), group_mask in zip(self.layers, self.per_layer(mask)):
            element_mask = units.expand(group_mask)
            out[layer.weight] = lambda w, em=element_mask: w * em.to(w)
        return out

    def export(self, keep: torch.Tensor) -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
        """Hard mask -> element-level block masks (block 1x1...) for ``apply_block_masks``."""
        out = {}
        for (layer, units), group_keep in zip(self.layers, self.per_layer(keep)):
            grid = units.expand(group_keep.to(torch.float32)).cpu().numpy() > 0.5
            out[layer.weight] = (grid, (1,) * len(layer.weight_shape))
        return out
