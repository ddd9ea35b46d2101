"""A read-only view of a model's main graph, and value shapes from shape inference."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cached_property

import numpy as np
import onnx
from onnx import helper

from smart_onnx.model import OnnxModel, copy_proto, is_float_tensor, subgraph_free_names, tensor_to_array

__all__ = ["GraphView", "attr", "measured_shapes", "output_ranks", "value_shapes"]

log = logging.getLogger(__name__)


def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """Attribute ``name`` of ``node`` decoded by its type (ints/floats lists as lists), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            if isinstance(value, bytes):
                return value.decode()
            return list(value) if a.type in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS) else value
    return default


class GraphView:
    """Producers, consumers, initializers and outputs of an ``OnnxModel``'s main graph.

    The view indexes the graph once; it does not notice later edits to the proto.
    """

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.graph = model.graph
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)
        self.initializers: dict[str, onnx.TensorProto] = {t.name: t for t in self.graph.initializer}
        self.outputs: tuple[str, ...] = tuple(o.name for o in self.graph.output)
        self.inputs: tuple[str, ...] = tuple(i.name for i in self.graph.input if i.name not in self.initializers)
        self._producer: dict[str, onnx.NodeProto] = {}
        self._consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self._by_name: dict[str, onnx.NodeProto] = {}
        for node in self.nodes:
            self._by_name[node.name] = node
            for out in node.output:
                if out:
                    self._producer[out] = node
            for slot, name in enumerate(node.input):
                if name:
                    self._consumers.setdefault(name, []).append((node, slot))

    def producer(self, value: str) -> onnx.NodeProto | None:
        """The node that writes ``value`` (None for inputs and initializers)."""
        return self._producer.get(value)

    def consumers(self, value: str) -> list[tuple[onnx.NodeProto, int]]:
        """``(node, input slot)`` for every read of ``value`` in the main graph, in graph order."""
        return list(self._consumers.get(value, ()))

    def node(self, name: str) -> onnx.NodeProto:
        """The node called ``name`` (KeyError if there is none)."""
        return self._by_name[name]

    def is_output(self, value: str) -> bool:
        return value in self._output_set

    @cached_property
    def _output_set(self) -> frozenset[str]:
        return frozenset(self.outputs)

    @cached_property
    def subgraph_reads(self) -> frozenset[str]:
        """Main-graph values that If/Loop/Scan bodies read (the analysis cannot follow them)."""
        names: set[str] = set()
        for node in self.nodes:
            names |= subgraph_free_names(node)
        return frozenset(names)

    def constant(self, value: str) -> np.ndarray | None:
        """The initializer ``value`` as numpy, or None when it is not an initializer."""
        tensor = self.initializers.get(value)
        return None if tensor is None else tensor_to_array(tensor)

    def shape_of_constant(self, value: str) -> tuple[int, ...] | None:
        """Shape of initializer ``value`` (through Identity/Transpose chains), or None."""
        tensor = self.initializers.get(value)
        if tensor is not None:
            return tuple(int(d) for d in tensor.dims)
        node = self.producer(value)
        if node is not None and node.op_type in ("Identity", "Transpose"):
            inner = self.shape_of_constant(node.input[0])
            if inner is None or node.op_type == "Identity":
                return inner
            perm = attr(node, "perm") or list(reversed(range(len(inner))))
            return tuple(inner[p] for p in perm)
        return None


def value_shapes(
    model: OnnxModel, input_shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the main graph's values from ONNX shape inference.

    Runs ``onnx.shape_inference`` (with ``data_prop=True``) on a copy whose runtime inputs
    are fixed to ``input_shapes`` (inputs not named keep their declared shape). Values whose
    shape stays partly or wholly unknown are absent; callers may add shapes measured by
    running the model. Initializers are included.

    Args:
        model: the model (not modified).
        input_shapes: concrete shape per runtime input name.

    Returns:
        value name -> shape.
    """
    proto = _without_weights(model.proto)
    for value in proto.graph.input:
        if input_shapes and value.name in input_shapes:
            dims = value.type.tensor_type.shape
            dims.Clear()
            for d in input_shapes[value.name]:
                dims.dim.add().dim_value = int(d)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # inference is best effort: shapes stay unknown, analysis freezes what needs them
        log.warning("shape inference failed (%s); continuing without inferred shapes", str(e).splitlines()[0])
        inferred = proto
    shapes: dict[str, tuple[int, ...]] = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = _concrete(value)
        if shape is not None:
            shapes[value.name] = shape
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    return shapes


def static_dims(model: OnnxModel) -> dict[str, tuple[int | None, ...]]:
    """Shapes from ONNX shape inference on the model as declared: None where a dim depends on the input.

    A dim known here is the same for every input the model accepts (a channel count fixed by the
    weights), unlike :func:`value_shapes`, whose inputs are pinned to the calibration shapes.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_weights(model.proto), check_type=False,
                                                     strict_mode=False, data_prop=True)
    except Exception as e:  # best effort, as in value_shapes
        log.warning("shape inference failed (%s); no dim is known to be static", str(e).splitlines()[0])
        return {}
    dims: dict[str, tuple[int | None, ...]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            dims[value.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else None
                                     for d in value.type.tensor_type.shape.dim)
    return dims


def output_ranks(model: OnnxModel) -> dict[str, int]:
    """Rank of each graph output: as declared, else from ONNX shape inference (absent when neither knows)."""
    ranks = {o.name: len(o.type.tensor_type.shape.dim) for o in model.graph.output
             if o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape")}
    if len(ranks) == len(model.graph.output):
        return ranks
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_weights(model.proto), strict_mode=False)
    except Exception as e:  # best effort, as in value_shapes
        log.warning("shape inference failed (%s); output ranks stay unknown", str(e).splitlines()[0])
        return ranks
    for o in inferred.graph.output:
        if o.name not in ranks and o.type.tensor_type.HasField("shape"):
            ranks[o.name] = len(o.type.tensor_type.shape.dim)
    return ranks


# Float initializers above this many elements become typed inputs for shape inference: their
# values never matter to shapes, and serialising them is most of the time inference takes.
_BIG = 1024


def _without_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose big float initializers are typed graph inputs, and without value_info."""
    graph = proto.graph
    declared = {v.name for v in graph.input}
    small, typed = [], []
    for t in graph.initializer:
        if is_float_tensor(t) and int(np.prod(t.dims, dtype=np.int64)) > _BIG:
            if t.name not in declared:
                typed.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            small.append(t)
    light = helper.make_graph(graph.node, graph.name, [*graph.input, *typed], graph.output, small)
    out = helper.make_model(light, opset_imports=proto.opset_import, ir_version=proto.ir_version)
    out.functions.extend(proto.functions)
    return out


def measured_shapes(
    model: OnnxModel, input_shapes: Mapping[str, tuple[int, ...]], names: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """Shapes of ``names`` measured by running the model once with onnx's reference evaluator.

    For values static shape inference leaves unknown (a ``Slice`` whose bounds are computed,
    for example). Runtime inputs are zeros of ``input_shapes``; a model the reference
    evaluator cannot run gives an empty result (logged), never an exception.
    """
    from onnx.reference import ReferenceEvaluator  # heavy import, only when needed

    proto = copy_proto(model.proto)
    known = {o.name for o in proto.graph.output}
    wanted = [n for n in names if n and n not in known]
    proto.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in wanted)
    feeds = {spec.name: np.zeros(input_shapes[spec.name], dtype=spec.dtype)
             for spec in model.inputs if spec.name in input_shapes}
    try:
        values = ReferenceEvaluator(proto).run(None, feeds)
    except Exception as e:  # any op the evaluator lacks; the analysis freezes what needs the shapes
        log.warning("could not measure shapes with the reference evaluator (%s)", str(e).splitlines()[0][:200])
        return {}
    outputs = [o.name for o in proto.graph.output]
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(outputs, values) if n in set(names)}


def _concrete(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in value.type.tensor_type.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)
