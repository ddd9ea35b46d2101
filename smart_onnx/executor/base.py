"""Base class and build context of op handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from smart_onnx.errors import GraphError
from smart_onnx.model import sparse_to_dense

__all__ = ["NodeContext", "OpModule", "decode_attribute", "describe"]


def describe(node: onnx.NodeProto) -> str:
    """'node NAME (OpType)' for messages."""
    name = node.name or f"<unnamed producing {list(node.output)}>"
    return f"node {name!r} ({node.op_type})"


def decode_attribute(attr: onnx.AttributeProto) -> Any:
    """An attribute's value as Python/numpy, decoded by its declared type."""
    A = onnx.AttributeProto
    t = attr.type
    if t == A.FLOAT:
        return float(attr.f)
    if t == A.INT:
        return int(attr.i)
    if t == A.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if t == A.TENSOR:
        return numpy_helper.to_array(attr.t)
    if t == A.SPARSE_TENSOR:
        return sparse_to_dense(attr.sparse_tensor)
    if t == A.GRAPH:
        return attr.g
    if t == A.FLOATS:
        return [float(x) for x in attr.floats]
    if t == A.INTS:
        return [int(x) for x in attr.ints]
    if t == A.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if t == A.GRAPHS:
        return list(attr.graphs)
    raise GraphError(f"attribute {attr.name!r} has unsupported type {A.AttributeType.Name(t)}")


@dataclass
class NodeContext:
    """What a handler's ``from_node`` may use.

    Attributes:
        node: the NodeProto.
        version: the op's since_version selected by the model's opset.
        attrs: attributes decoded by type (spec defaults are the handler's job).
        constants: numpy values of inputs that are initializers, by input position.
        build_subgraph: turns a GraphProto attribute into a runnable submodule.
    """

    node: onnx.NodeProto
    version: int
    attrs: dict[str, Any]
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    build_subgraph: Callable[[onnx.GraphProto], nn.Module] | None = None

    def describe(self) -> str:
        return describe(self.node)


class OpModule(nn.Module):
    """One ONNX node as a torch module; ``forward`` takes inputs in ONNX order.

    Missing optional inputs arrive as ``None``. Multi-output ops return a tuple.

    Class attributes:
        static_inputs: positions of inputs that are shape/config data (shape, axes,
            pads, scales, ...). A floating-point initializer used only in such slots
            stays a constant instead of becoming an ``nn.Parameter``.
        weighs_channels: ``forward`` takes a keyword ``channel_weights`` (see the comment there),
            which the graph passes where the transforms hold a :class:`ChannelWeights` for the node.
    """

    static_inputs: ClassVar[frozenset[int]] = frozenset()
    # Ops that take a mean over channels (ReduceMean, the LayerNorms) accept ``channel_weights``: a tensor
    # broadcastable to input 0 whose mean over the reduced axis is 1 (``m * n / sum(m)`` for a channel mask
    # ``m``), so that every mean they take is weighted by it: over the kept channels only, for a hard mask.
    weighs_channels: ClassVar[bool] = False

    @classmethod
    def from_node(cls, ctx: NodeContext) -> OpModule:
        """Default: attributes passed as keyword arguments to ``__init__`` (spec names)."""
        try:
            return cls(**ctx.attrs)
        except TypeError as e:
            raise GraphError(f"{ctx.describe()} has attributes this handler does not support ({e})") from e

    @staticmethod
    def ints(t: torch.Tensor | None) -> list[int] | None:
        """A shape/axes tensor as a Python list (None stays None)."""
        return None if t is None else [int(x) for x in t.reshape(-1).tolist()]
