"""The analysis stage's entry point: prunable layers, coupling groups, shapes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from smart_onnx.errors import SmartOnnxError
from smart_onnx.graph.assemble import build_groups
from smart_onnx.graph.groups import CouplingGroup, Role
from smart_onnx.graph.layers import PrunableLayer, find_prunable_layers
from smart_onnx.graph.view import GraphView, measured_shapes, value_shapes
from smart_onnx.model import OnnxModel, resolve_input_shapes

__all__ = ["Analysis", "ShapeMeasure", "analyze"]

log = logging.getLogger(__name__)

# (concrete input shapes, value names) -> measured shapes, e.g. ``Executor.value_shapes``.
ShapeMeasure = Callable[[Mapping[str, tuple[int, ...]], Sequence[str]], Mapping[str, tuple[int, ...]]]

# The slice roles that mean "this layer's output channels are this group's channels".
_OWN_OUTPUT = (Role.PRODUCER_WEIGHT, Role.DEPTHWISE_WEIGHT)


@dataclass(frozen=True)
class Analysis:
    """What the analysis found in a model.

    Attributes:
        layers: prunable layers in graph order.
        groups: coupling groups; ``groups[i].id == i``. Every prunable layer's output
            channels belong to exactly one group (its root group).
        shapes: value name -> concrete shape at the analysed input shapes (values whose
            shape is unknown are absent).
        input_shapes: the concrete input shapes the analysis used.
    """

    layers: tuple[PrunableLayer, ...]
    groups: tuple[CouplingGroup, ...]
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def layer(self, name: str) -> PrunableLayer:
        """The layer of node ``name`` (KeyError if it is not prunable)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def group_of(self, layer: str) -> CouplingGroup:
        """The group holding ``layer``'s output channels (a depthwise conv's: its input's group; KeyError if none)."""
        for group in self.groups:
            if any(s.node == layer and s.role in _OWN_OUTPUT for s in group.slices):
                return group
        raise KeyError(layer)

    @property
    def prunable_groups(self) -> tuple[CouplingGroup, ...]:
        return tuple(g for g in self.groups if g.frozen is None)

    @property
    def frozen_groups(self) -> tuple[CouplingGroup, ...]:
        return tuple(g for g in self.groups if g.frozen is not None)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (``inspect --json``, reports)."""
        return {
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "layers": [layer.to_dict() for layer in self.layers],
            "groups": [g.to_dict() for g in self.groups],
            "summary": {
                "layers": len(self.layers),
                "groups": len(self.groups),
                "frozen_groups": len(self.frozen_groups),
                "prunable_params": sum(g.params for g in self.prunable_groups),
                "prunable_macs": sum(g.macs for g in self.prunable_groups),
            },
        }


def analyze(
    model: OnnxModel,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    measure: bool = True,
    measure_shapes: ShapeMeasure | None = None,
) -> Analysis:
    """Find prunable layers and channel-coupling groups.

    Args:
        model: a loaded (normalised) model; it is not modified.
        input_shapes: concrete shapes for runtime inputs; missing ones are resolved with
            :func:`smart_onnx.model.resolve_input_shapes` (symbolic batch -> 1).
        measure: when a shape static inference leaves unknown matters (a layer's MACs, a
            rule's decision), measure the unknown shapes by running the model once on zeros
            with onnx's reference evaluator (numpy; slow only for big models), and redo the analysis.
        measure_shapes: measures those shapes instead of the reference evaluator (which stays
            the fallback when this raises a SmartOnnxError), e.g. ``Executor.value_shapes`` of
            an executor the caller already built: one torch forward pass, much faster.

    Returns:
        The :class:`Analysis`. Problems in the graph freeze groups (with a reason); they
        never raise.

    Raises:
        GraphError: an input has a symbolic non-batch dim and no shape was given.
    """
    concrete = resolve_input_shapes(model, input_shapes)
    shapes = value_shapes(model, concrete)
    view = GraphView(model)
    layers, groups, missing = _run(view, shapes)
    if missing and measure:
        # Only when an unknown shape mattered: the reference evaluator runs the whole model.
        log.info("shape inference left %d needed values unknown; measuring them", len(missing))
        unknown = [o for node in view.nodes for o in node.output if o and o not in shapes]
        shapes.update(_measure(model, concrete, unknown, measure_shapes))
        layers, groups, _ = _run(view, shapes)
    log.info("analysis: %d prunable layers, %d groups (%d frozen)", len(layers), len(groups),
             sum(g.frozen is not None for g in groups))
    return Analysis(layers, groups, shapes, concrete)


def _measure(
    model: OnnxModel, concrete: Mapping[str, tuple[int, ...]], names: Sequence[str], measure: ShapeMeasure | None
) -> Mapping[str, tuple[int, ...]]:
    """The caller's measurement, or onnx's reference evaluator when there is none or it fails."""
    if measure is not None:
        try:
            return measure(concrete, names)
        except SmartOnnxError as e:
            log.warning("could not measure shapes (%s); trying onnx's reference evaluator", e)
    return measured_shapes(model, concrete, names)


def _run(
    view: GraphView, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[tuple[PrunableLayer, ...], tuple[CouplingGroup, ...], set[str]]:
    """Layers and groups at ``shapes``, and the values whose unknown shape mattered."""
    layers = tuple(find_prunable_layers(view, shapes))
    missing: set[str] = set()
    groups = tuple(build_groups(view, layers, shapes, missing))
    for layer in layers:
        if layer.macs is None:
            node = view.node(layer.name)
            missing.add(node.input[0] if layer.op_type == "ConvTranspose" else node.output[0])
    return layers, groups, missing
