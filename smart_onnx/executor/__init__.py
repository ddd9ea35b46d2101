"""ONNX -> torch: run an ONNX graph as a differentiable ``torch.nn.Module``."""

from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.module import ChannelWeights, Executor, GraphModule, Transforms, unsupported_nodes
from smart_onnx.executor.registry import register, resolve, supported_ops
from smart_onnx.executor.weights import WeightStore

__all__ = [
    "ChannelWeights",
    "Executor",
    "GraphModule",
    "NodeContext",
    "OpModule",
    "Transforms",
    "WeightStore",
    "register",
    "resolve",
    "supported_ops",
    "unsupported_nodes",
]
