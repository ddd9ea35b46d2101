"""Channel-coupling groups (work in progress: the propagation lands in the next commit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from smart_onnx.graph.groups import CouplingGroup
from smart_onnx.graph.layers import PrunableLayer
from smart_onnx.graph.view import GraphView

__all__ = ["build_groups"]


def build_groups(
    view: GraphView, layers: Sequence[PrunableLayer], shapes: Mapping[str, tuple[int, ...]]
) -> list[CouplingGroup]:
    """One group per set of coupled output channels of ``layers``."""
    raise NotImplementedError("coupling propagation is not written yet")
