"""Internal tensors worth matching between the pruned and the dense model (feature distillation).

With a few dozen calibration samples, matching only the outputs leaves the inside of the
network free to drift; matching a handful of internal tensors as well is the standard remedy.
The tensors chosen are where a network's stages meet: the outputs of residual ``Add`` nodes
(a ResNet/MobileNet block, a transformer sublayer), else, for plain chains, the inputs of
the prunable layers. At most ``limit`` of them, spread evenly along the graph.
"""

from __future__ import annotations

from smart_onnx.graph.view import GraphView
from smart_onnx.model import OnnxModel

__all__ = ["feature_points"]


def _evenly(names: list[str], limit: int) -> list[str]:
    if len(names) <= limit:
        return names
    step = len(names) / limit
    return [names[int((i + 1) * step) - 1] for i in range(limit)]  # the last one is always taken


def feature_points(model: OnnxModel, layer_nodes: list[str], limit: int = 8) -> list[str]:
    """Names of up to ``limit`` float activations of the main graph to distill, in graph order.

    Args:
        model: the model.
        layer_nodes: names of the prunable layers' nodes (their inputs are the fallback points).
        limit: the most points returned (0: none).
    """
    if limit <= 0:
        return []
    view = GraphView(model)
    skip = set(view.outputs) | set(view.initializers) | set(view.inputs)
    merges = []
    for node in view.nodes:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        # Both operands computed (not a bias or a constant): two branches meet here.
        if all(view.producer(i) is not None and i not in view.initializers for i in node.input):
            merges.extend(o for o in node.output if o and o not in skip)
    if not merges:
        wanted = set(layer_nodes)
        seen: set[str] = set()
        for node in view.nodes:
            if node.name in wanted and node.input and node.input[0] not in skip and node.input[0] not in seen:
                seen.add(node.input[0])
                merges.append(node.input[0])
    return _evenly(merges, limit)
