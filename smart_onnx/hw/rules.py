"""What a profile asks of each prunable layer: its block shape, its N:M pattern, whether it stays dense.

Shared by the checker and the search constraints; numpy/onnx only (no torch).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence

from smart_onnx.errors import ConstraintError
from smart_onnx.graph import Analysis, PrunableLayer
from smart_onnx.hw.constraints import Profile

__all__ = [
    "block_shape_for", "block_shapes", "dense_layer_names", "dense_reasons", "fit_rank", "ineligible", "mode_for",
    "nm_for", "nm_layers", "undecided",
]


def mode_for(profile: Profile, mode: str | None = None) -> str:
    """The pruning mode to run: ``mode`` if the profile can serve it, the profile's own when None.

    Raises:
        ConstraintError: the profile allows no pattern of that mode (e.g. block mode on a
            channel-only profile).
    """
    if mode is None:
        return profile.mode
    if mode not in profile.modes:
        raise ConstraintError(
            f"target {profile.name} allows no {mode} pattern; its modes are {', '.join(profile.modes)}"
        )
    return mode


def fit_rank(block: Sequence[int], rank: int) -> tuple[int, ...]:
    """A canonical block for a weight of ``rank`` dims: 1s added, or trailing dims dropped.

    ``16x8`` on a conv is ``16x8x1x1``; ``16x8x1x1`` on a Gemm is ``16x8`` (the same rule
    :class:`smart_onnx.search.BlockSpace` applies).
    """
    return (tuple(block) + (1,) * rank)[:rank]


def block_shape_for(profile: Profile, layer: PrunableLayer) -> tuple[int, ...] | None:
    """The block the search uses for ``layer``: the first allowed for its op, in canonical order.

    Args:
        profile: the target.
        layer: a prunable layer.

    Returns:
        ``(O, I, k...)`` with the weight's rank, or None when the profile allows no block
        for the op (the layer gets no block units). Dense-only layers are not excluded
        here: that needs the whole model (see :func:`block_shapes`).
    """
    rule = profile.rule_for(layer.op_type)
    return fit_rank(rule.blocks[0], len(layer.weight_shape)) if rule.blocks else None


def nm_for(profile: Profile, layer: PrunableLayer) -> tuple[int, int] | None:
    """The first N:M pattern the profile allows for ``layer``'s op, or None."""
    rule = profile.rule_for(layer.op_type)
    return rule.nm[0] if rule.nm else None


def ineligible(profile: Profile, layer: PrunableLayer) -> str | None:
    """Why the target's sparse kernels do not apply to ``layer`` (None: they do, or its op has no pattern).

    The op's eligibility conditions (``in_channel_multiple``, ``out_channel_multiple``,
    ``min_reduction``, ``min_out_channels``, ``min_macs``) are read from the weight's shape;
    ``min_macs`` needs the layer's MACs and is skipped when they are unknown (see
    :func:`undecided`).
    """
    rule = profile.rule_for(layer.op_type)
    if not rule.allows_sparsity:
        return None
    inputs = layer.weight_shape[layer.in_axis]
    kernel = math.prod(layer.weight_shape[a] for a in layer.kernel_axes)
    per = " per group" if layer.groups > 1 else ""
    found = []
    if inputs % rule.in_channel_multiple:
        found.append(f"{inputs} input channels{per}, not a multiple of {rule.in_channel_multiple}")
    if layer.out_channels % rule.out_channel_multiple:
        found.append(f"{layer.out_channels} output channels, not a multiple of {rule.out_channel_multiple}")
    if inputs * kernel < rule.min_reduction:
        found.append(f"each output sums {inputs}{per} x {kernel} = {inputs * kernel} products, fewer than "
                     f"{rule.min_reduction}")
    if layer.out_channels < rule.min_out_channels:
        found.append(f"{layer.out_channels} output channels, fewer than {rule.min_out_channels}")
    if rule.min_macs and layer.macs is not None and layer.macs < rule.min_macs:
        found.append(f"{layer.macs:,} MACs per sample, fewer than {rule.min_macs:,}")
    return "; ".join(found) or None


def undecided(profile: Profile, layer: PrunableLayer) -> str | None:
    """What keeps eligibility open without activation shapes: a ``min_macs`` rule and unknown MACs."""
    rule = profile.rule_for(layer.op_type)
    if rule.allows_sparsity and rule.min_macs and layer.macs is None:
        return (f"whether its MACs reach the {rule.min_macs:,} the target's sparse kernels need is decided on "
                "activation shapes")
    return None


def dense_reasons(profile: Profile, layers: Sequence[PrunableLayer]) -> dict[str, str]:
    """Layers that must keep every weight, each with the profile rule that says so.

    ``"first"``/``"last"`` in ``dense_layers`` are the first/last of ``layers`` (graph
    order); other entries are node names or ``fnmatch`` patterns. A layer the target's
    sparse kernels do not apply to (:func:`ineligible`) is dense too: zeros there cost
    accuracy and save nothing. So is a layer that shares its weight initializer with a
    dense layer: it is the same tensor.
    """
    reasons: dict[str, str] = {}
    for i, layer in enumerate(layers):
        if layer.op_type in profile.dense_ops:
            reasons[layer.name] = f"dense_ops lists {layer.op_type}"
            continue
        why = ineligible(profile, layer)
        if why is not None:
            reasons[layer.name] = f"the target's sparse kernels do not apply: {why}"
            continue
        for pattern in profile.dense_layers:
            special = (pattern == "first" and i == 0) or (pattern == "last" and i == len(layers) - 1)
            if special or fnmatch.fnmatchcase(layer.name, pattern):
                reasons[layer.name] = f"dense_layers entry {pattern!r}"
                break
    dense_weights = {lay.weight: lay.name for lay in layers if lay.name in reasons}
    for layer in layers:
        owner = dense_weights.get(layer.weight)
        if owner is not None and layer.name not in reasons:
            reasons[layer.name] = f"it shares weight {layer.weight!r} with dense layer {owner!r}"
    return reasons


def dense_layer_names(profile: Profile, analysis: Analysis | Sequence[PrunableLayer]) -> set[str]:
    """Names of the layers the profile keeps dense (see :func:`dense_reasons`)."""
    return set(dense_reasons(profile, _layers(analysis)))


def block_shapes(profile: Profile, analysis: Analysis | Sequence[PrunableLayer]) -> dict[str, tuple[int, ...]]:
    """``{layer name: canonical block}`` for the layers that get block units.

    Layers left out: dense-only ones and those whose op the profile gives no block. Pass
    the result to ``BlockSpace([l for l in analysis.layers if l.name in shapes], shapes)``.
    """
    layers = _layers(analysis)
    dense = dense_reasons(profile, layers)
    out = {}
    for layer in layers:
        block = block_shape_for(profile, layer)
        if block is not None and layer.name not in dense:
            out[layer.name] = block
    return out


def nm_layers(
    profile: Profile, analysis: Analysis | Sequence[PrunableLayer], pattern: tuple[int, int] | None = None
) -> tuple[tuple[int, int] | None, list[PrunableLayer]]:
    """The N:M pattern to search and the layers that get it.

    Args:
        profile: the target.
        analysis: the model's layers.
        pattern: the pattern to use; None picks the first one the profile allows for any
            layer (in graph order).

    Returns:
        ``(pattern, layers)``: the non-dense layers whose op allows ``pattern``, for
        ``NMSpace(layers, *pattern)``; ``(None, [])`` when the profile allows no N:M.
    """
    layers = _layers(analysis)
    dense = dense_reasons(profile, layers)
    candidates = [lay for lay in layers if lay.name not in dense]
    if pattern is None:
        pattern = next((nm_for(profile, lay) for lay in candidates if nm_for(profile, lay)), None)
    if pattern is None:
        return None, []
    return pattern, [lay for lay in candidates if tuple(pattern) in profile.rule_for(lay.op_type).nm]


def _layers(analysis: Analysis | Iterable[PrunableLayer]) -> list[PrunableLayer]:
    return list(analysis.layers if isinstance(analysis, Analysis) else analysis)
