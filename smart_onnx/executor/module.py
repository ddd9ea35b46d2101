"""Executor: an ONNX graph as a differentiable ``torch.nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from smart_onnx.errors import DataError, GraphError, UnsupportedOpError
from smart_onnx.executor import ops as _ops  # noqa: F401  (registers the handlers)
from smart_onnx.executor.base import NodeContext, decode_attribute, describe
from smart_onnx.executor.registry import resolve
from smart_onnx.executor.weights import WeightStore
from smart_onnx.model import OnnxModel, is_float_tensor, iter_graphs, subgraph_free_names, tensor_to_array

__all__ = ["ChannelWeights", "Executor", "GraphModule", "Transforms", "unsupported_nodes"]

@dataclass(frozen=True)
class ChannelWeights:
    """A transforms key: ``transforms[ChannelWeights(node)](x)`` gives the weights of the channels ``node`` (an op
    whose ``weighs_channels`` is set) takes its means over, broadcastable to its input ``x``: how a channel mask
    makes a LayerNorm normalise over the kept channels only, as the pruned model does."""

    node: str


# name -> function applied to that value whenever it is read (weights) or produced
# (activations); how the search applies masks without touching the graph. ChannelWeights keys
# weigh the means of the ops that normalise over channels.
Transforms = Mapping["str | ChannelWeights", Callable[[torch.Tensor], torch.Tensor]]


def _opsets(model: OnnxModel) -> dict[str, int]:
    out = {("" if o.domain in ("", "ai.onnx") else o.domain): int(o.version) for o in model.proto.opset_import}
    out.setdefault("", 1)
    return out


def _opset_for(node: onnx.NodeProto, opsets: Mapping[str, int]) -> int:
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    if domain not in opsets:
        raise GraphError(f"{describe(node)} uses domain {domain!r}, which the model does not import")
    return opsets[domain]


def unsupported_nodes(model: OnnxModel) -> list[str]:
    """One message per node (subgraphs included) the executor cannot run."""
    opsets = _opsets(model)
    problems: list[str] = []
    for graph in iter_graphs(model.graph):
        for node in graph.node:
            try:
                resolve(node, _opset_for(node, opsets))
            except (UnsupportedOpError, GraphError) as e:
                problems.append(str(e))
    return problems


class GraphModule(nn.Module):
    """Runs one GraphProto (the main graph or an If/Loop body) in topological order."""

    def __init__(self, graph: onnx.GraphProto, store: WeightStore, opsets: Mapping[str, int]) -> None:
        super().__init__()
        # Not a submodule: every GraphModule shares the one store the Executor owns.
        object.__setattr__(self, "_store", store)
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        self.nodes = nn.ModuleList()
        self._plan: list[tuple[list[str], list[str], bool]] = []
        self._weighed: list[ChannelWeights | None] = []
        for node in graph.node:
            cls, version = resolve(node, _opset_for(node, opsets))
            ctx = NodeContext(
                node=node,
                version=version,
                attrs={a.name: decode_attribute(a) for a in node.attribute},
                constants={i: store.get(n).detach().cpu().numpy() for i, n in enumerate(node.input) if n in store},
                build_subgraph=lambda g: GraphModule(g, store, opsets),
            )
            module = cls.from_node(ctx)
            module.onnx_node = node.name  # for error messages
            self.nodes.append(module)
            self._plan.append((list(node.input), list(node.output), getattr(cls, "needs_scope", False)))
            self._weighed.append(ChannelWeights(node.name) if cls.weighs_channels else None)
        self._frees = self._last_uses(graph)
        # Plain list: indexing an nn.ModuleList costs a string conversion per node.
        self._steps = list(zip(self.nodes, self._plan, self._frees, self._weighed))

    def _last_uses(self, graph: onnx.GraphProto) -> list[list[str]]:
        """Per node, the values no later node (or graph output) reads: freed to save memory."""
        last: dict[str, int] = {}
        for idx, node in enumerate(graph.node):
            for name in set(node.input) | subgraph_free_names(node):
                last[name] = idx
        keep = set(self.output_names)
        frees: list[list[str]] = [[] for _ in graph.node]
        for name, idx in last.items():
            if name and name not in keep:
                frees[idx].append(name)
        return frees

    def run(self, env: dict[str, torch.Tensor], transforms: Transforms | None = None) -> list[torch.Tensor]:
        """Run the graph on ``env`` (inputs and outer-scope values; updated in place)."""
        self.run_range(env, transforms)
        return [self._value(env, n, transforms or {}) for n in self.output_names]

    def run_range(self, env: dict[str, torch.Tensor], transforms: Transforms | None = None, start: int = 0,
                  stop: int | None = None, snapshot_at: int | None = None) -> dict[str, torch.Tensor] | None:
        """Run nodes ``start`` to ``stop`` (exclusive; None: the end) on ``env``, updated in place.

        ``env`` must hold every value those nodes read that no node in the range produces: the
        graph inputs from node 0, else the live values a run to ``start`` left (a snapshot).
        Values no later node reads are dropped as the run passes their last reader.

        Returns:
            With ``snapshot_at`` (in ``[start, stop]``): a shallow copy of ``env`` as it was
            before node ``snapshot_at`` ran, from which a later call can resume at that node;
            else None.
        """
        transforms = transforms or {}
        stop = len(self.nodes) if stop is None else stop
        if start == 0:
            for name in self.input_names:
                # Fed inputs are "produced" by the caller: without this, a layer reading a graph input
                # directly (a stem conv) could not be observed or masked through its activation.
                if name in env and name in transforms:
                    env[name] = transforms[name](env[name])
        snapshot = None
        for idx in range(start, stop):
            if idx == snapshot_at:
                snapshot = dict(env)
            self._run_node(idx, env, transforms)
        return dict(env) if snapshot_at == stop else snapshot

    def _value(self, env: dict[str, torch.Tensor], name: str, transforms: Transforms) -> torch.Tensor:
        if name in env:
            return env[name]
        store: WeightStore = self._store
        if name in store:
            t = store.get(name)
            if name in transforms:
                t = transforms[name](t)
            env[name] = t
            return t
        raise GraphError(f"value {name!r} is read before any node produces it")

    def _run_node(self, idx: int, env: dict[str, torch.Tensor], transforms: Transforms) -> None:
        module, (inputs, outputs, needs_scope), frees, weighed = self._steps[idx]
        args = [self._value(env, n, transforms) if n else None for n in inputs]
        try:
            # forward directly: nn.Module.__call__'s hook machinery costs ~5 us per node and no hooks are used.
            forward = module.forward
            if needs_scope:
                result = forward(*args, scope=env, transforms=transforms)
            elif weighed is not None and weighed in transforms:
                # The weights take the dtype and device of the first float input: input 0 of a fused embedding
                # (EmbedLayerNormalization) holds the token ids, and int64 weights would truncate to 0 and 1.
                like = next((a for a in args if a is not None and a.is_floating_point()), args[0])
                result = forward(*args, channel_weights=transforms[weighed](like))
            else:
                result = forward(*args)
        except (GraphError, UnsupportedOpError):
            raise
        except (RuntimeError, IndexError, ValueError, TypeError) as e:
            raise GraphError(
                f"node {module.onnx_node!r} ({type(module).__name__}) failed: {str(e).splitlines()[0]}"
            ) from e
        results = result if isinstance(result, (tuple, list)) else (result,)
        for name, out in zip(outputs, results):
            if name:
                env[name] = transforms[name](out) if name in transforms else out
        for name in frees:
            env.pop(name, None)


class Executor(nn.Module):
    """A whole ONNX model as a ``torch.nn.Module``.

    Floating-point weights are ``nn.Parameter``s in ``self.weights`` (a
    :class:`WeightStore`) keyed by ONNX tensor name; a tensor read by several
    nodes is one parameter.

    Args:
        model: the ONNX model.
        shared: initializers by name taken as they are instead of read from ``model`` (frozen buffers that
            share storage with the given tensors): a frozen copy of a model reuses the tensors training
            never changes instead of holding them twice.

    Raises:
        UnsupportedOpError: on construction, for the first node that cannot run.
    """

    def __init__(self, model: OnnxModel, shared: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        opsets = _opsets(model)
        shared = shared or {}
        arrays, trainable = self._collect_weights(model, opsets, skip=shared)
        self.weights = WeightStore(arrays, trainable, shared)
        self.graph_module = GraphModule(model.graph, self.weights, opsets)
        self.input_specs = model.inputs
        self.input_names = [s.name for s in self.input_specs]
        self.output_names = list(self.graph_module.output_names)

    @staticmethod
    def _collect_weights(model: OnnxModel, opsets: Mapping[str, int],
                         skip: Container[str]) -> tuple[dict[str, np.ndarray], set[str]]:
        arrays: dict[str, np.ndarray] = {}
        floats: set[str] = set()
        for graph in iter_graphs(model.graph):
            for t in graph.initializer:
                if t.name in arrays or t.name in skip:
                    continue
                arrays[t.name] = tensor_to_array(t)
                if is_float_tensor(t):
                    floats.add(t.name)
        trainable: set[str] = set()
        for graph in iter_graphs(model.graph):
            for node in graph.node:
                cls, _ = resolve(node, _opset_for(node, opsets))
                for i, name in enumerate(node.input):
                    if name in floats and i not in cls.static_inputs:
                        trainable.add(name)
        return arrays, trainable

    def feeds(self, *args: Any, **named: Any) -> dict[str, torch.Tensor]:
        """Inputs by name, from positional (graph input order) and keyword arguments."""
        if len(args) == 1 and isinstance(args[0], Mapping):
            named = {**args[0], **named}
            args = ()
        if len(args) > len(self.input_names):
            raise DataError(f"the model takes {len(self.input_names)} inputs, got {len(args)}")
        feeds = dict(zip(self.input_names, args))
        feeds.update(named)
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise DataError(f"missing model inputs {missing} (the model's inputs are {self.input_names})")
        extra = sorted(set(feeds) - set(self.input_names))
        if extra:
            raise DataError(f"unknown model inputs {extra} (the model's inputs are {self.input_names})")
        device = next(iter(self.weights.buffers()), next(iter(self.weights.parameters()), None))
        out = {}
        for name, v in feeds.items():
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
            out[name] = t.to(device.device) if device is not None and t.device != device.device else t
        return out

    def forward(self, *args: Any, transforms: Transforms | None = None, **named: Any) -> dict[str, torch.Tensor]:
        """Run the model.

        Args:
            *args: inputs in graph-input order, or one mapping name -> tensor.
            transforms: name -> function applied to that weight or activation as it
                is read or produced (the search's masks).
            **named: inputs by name.

        Returns:
            Graph outputs by name, in graph order.
        """
        env = self.feeds(*args, **named)
        values = self.graph_module.run(env, transforms)
        return dict(zip(self.output_names, values))

    def run_range(self, env: dict[str, torch.Tensor], transforms: Transforms | None = None, start: int = 0,
                  stop: int | None = None, snapshot_at: int | None = None) -> dict[str, torch.Tensor] | None:
        """Run the main graph's nodes ``start`` to ``stop`` on ``env`` (see :meth:`GraphModule.run_range`):
        a run in pieces, resumed from snapshots, for callers that visit the graph layer by layer."""
        return self.graph_module.run_range(env, transforms, start, stop, snapshot_at)

    def value_shapes(
        self, input_shapes: Mapping[str, tuple[int, ...]], names: Sequence[str]
    ) -> dict[str, tuple[int, ...]]:
        """Shapes of the values ``names`` in one run on zeros of ``input_shapes``, without gradients.

        What :func:`smart_onnx.graph.analyze` measures when shape inference leaves a shape
        unknown (pass it as ``measure_shapes``): one forward pass instead of onnx's numpy
        reference evaluator.

        Args:
            input_shapes: concrete shape per graph input.
            names: values produced by nodes (values no node produced in this run are left out).

        Returns:
            Value name -> shape.

        Raises:
            DataError: an input has no shape in ``input_shapes``.
            GraphError: a node fails on the zeros.
        """
        shapes: dict[str, tuple[int, ...]] = {}

        def recorder(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
            def record(value: torch.Tensor) -> torch.Tensor:
                if isinstance(value, torch.Tensor):
                    shapes[name] = tuple(int(d) for d in value.shape)
                return value
            return record

        feeds = {spec.name: torch.from_numpy(np.zeros(input_shapes[spec.name], dtype=spec.dtype))
                 for spec in self.input_specs if spec.name in input_shapes}
        with torch.no_grad():
            self(feeds, transforms={name: recorder(name) for name in names if name})
        return shapes

    def parameter_names(self) -> list[str]:
        return self.weights.parameter_names()
