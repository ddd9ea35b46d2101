"""Load, normalise and save ONNX models.

Loading accepts what real exporters write and normalises it into one form the
other stages can rely on:

* external data is read in (the saved model is self-contained unless it is too big);
* ``Constant`` nodes that hold tensors become named initializers (Paddle/RapidOCR
  and torch legacy exports store weights that way), in subgraphs too;
* ``sparse_initializer`` entries are densified;
* nodes are put in topological order (some exporters do not);
* symbolic dims are kept as they are.

Saving is atomic (temp file in the same directory, then rename) and lowers the IR
version to 10 where the opsets allow it (what older compilers and onnxruntime accept).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import helper, numpy_helper

from smart_onnx._atomic import atomic_output
from smart_onnx.errors import GraphError, ModelLoadError

__all__ = [
    "MAX_IR_VERSION",
    "SAVE_IR_VERSION",
    "InputSpec",
    "OnnxModel",
    "constant_node_value",
    "copy_proto",
    "is_large",
    "iter_graphs",
    "load_model",
    "normalize",
    "normalized",
    "proto_bytes",
    "resolve_input_shapes",
    "save_ir_version",
    "save_model",
    "sparse_to_dense",
    "subgraph_free_names",
    "tensor_to_array",
    "write_weights_apart",
]

log = logging.getLogger(__name__)

# onnxruntime 1.31 accepts IR version <= 13; onnx 1.23 writes 14 by default.
MAX_IR_VERSION = 13
# What save_model writes where the opsets allow it (IR 10: onnx 1.16, opset 21).
SAVE_IR_VERSION = 10
# Protobuf refuses to serialise a message of 2 GiB or more.
_PROTO_LIMIT = 2**31 - 2**20
# write_weights_apart: initializers of at least this many bytes go to the weights file.
_APART_BYTES = 1024
# Models over this size reach the checkers and onnxruntime as a file with the weights apart (see is_large).
_LARGE_BYTES = 64 * 2**20

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
}


@dataclass(frozen=True)
class InputSpec:
    """A graph input: name, shape (ints for fixed dims, strings for symbolic ones), dtype."""

    name: str
    shape: tuple[int | str, ...]
    dtype: np.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)

    def is_float(self) -> bool:
        return np.issubdtype(self.dtype, np.floating)


@dataclass
class OnnxModel:
    """A normalised ONNX model plus where it came from.

    Attributes:
        proto: the normalised ``ModelProto`` (Constant tensors lifted, sparse
            initializers densified, nodes in topological order).
        path: the file it was loaded from, if any.
        lifted_constants: names of tensors that were ``Constant`` nodes in the file.
    """

    proto: onnx.ModelProto
    path: Path | None = None
    lifted_constants: frozenset[str] = field(default_factory=frozenset)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    @property
    def opset(self) -> int:
        """Opset version of the default ("ai.onnx") domain."""
        return opset_of(self.proto, "")

    def opset_for(self, domain: str) -> int:
        return opset_of(self.proto, domain)

    @property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {t.name: t for t in self.graph.initializer}

    @property
    def inputs(self) -> list[InputSpec]:
        """Graph inputs that are real runtime inputs (not initializers)."""
        inits = {t.name for t in self.graph.initializer}
        return [_input_spec(v) for v in self.graph.input if v.name not in inits]

    @property
    def outputs(self) -> list[InputSpec]:
        return [_input_spec(v) for v in self.graph.output]

    def weight(self, name: str) -> np.ndarray:
        """The initializer ``name`` as a numpy array."""
        for t in self.graph.initializer:
            if t.name == name:
                return tensor_to_array(t)
        raise GraphError(f"no initializer named {name!r} in the model")

    def num_weights(self, floating_only: bool = True) -> int:
        """Total number of elements in (floating-point) initializers, subgraphs included."""
        total = 0
        for graph in iter_graphs(self.graph):
            for t in graph.initializer:
                if floating_only and t.data_type not in _FLOAT_TYPES:
                    continue
                total += int(np.prod(t.dims, dtype=np.int64))
        return total

    def copy(self) -> OnnxModel:
        return OnnxModel(copy_proto(self.proto), self.path, self.lifted_constants)


def copy_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy of a ModelProto (passes and checks edit copies, never the caller's model)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def proto_bytes(proto: onnx.ModelProto) -> int:
    """The serialised size of ``proto`` to within a few bytes: its graph's initializers and nodes (which hold all but
    the header) measured one by one. upb's ``ByteSize`` of a whole model serialises it, a transient of about twice
    the model (833 MiB for BERT-base's 437 MB), where one part at a time costs at most its own size."""
    graph = proto.graph
    return sum(t.ByteSize() for t in graph.initializer) + sum(t.ByteSize() for t in graph.sparse_initializer) + sum(
        n.ByteSize() for n in graph.node)


def is_large(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` goes to the tools that read a whole model (the full checker, shape inference,
    onnxruntime) as a file written by :func:`write_weights_apart` rather than as its bytes: over 64 MiB, the
    bytes beside the tool's own parse were about two more copies of the model (BERT-base's 437 MB set the peak
    of a whole prune); over 2 GiB protobuf cannot serialise it at all."""
    return proto_bytes(proto) > _LARGE_BYTES


def write_weights_apart(proto: onnx.ModelProto, path: str | os.PathLike[str], ir_version: int | None = None) -> Path:
    """Write ``proto`` to ``path`` with the main graph's initializers of 1 KiB or more in ``<path>.data`` beside it
    (ONNX external data), neither copying the weights in memory nor changing ``proto``; returns ``path``.

    For a file that tools read once (the checkers, an onnxruntime session): from external data they never
    hold the model's bytes beside their own copy of the weights. ``onnx.save_model`` with external data would
    instead move ``proto``'s weights into the file and clear them from the message. ``ir_version``, where
    given, replaces the model's in the written file.
    """
    out = Path(path)
    data = out.with_name(out.name + ".data")
    skeleton = onnx.ModelProto()
    for field_, value in proto.ListFields():
        if field_.name != "graph":
            _copy_field(skeleton, field_, value)
    for field_, value in proto.graph.ListFields():
        if field_.name != "initializer":
            _copy_field(skeleton.graph, field_, value)
    with open(data, "wb") as weights:
        for tensor in proto.graph.initializer:
            raw = tensor.raw_data  # a copy of this tensor's bytes (one tensor at a time)
            if len(raw) < _APART_BYTES:
                skeleton.graph.initializer.append(tensor)
                continue
            moved = skeleton.graph.initializer.add()
            for field_, value in tensor.ListFields():
                if field_.name != "raw_data":
                    _copy_field(moved, field_, value)
            offset = weights.tell()
            weights.write(raw)
            moved.data_location = onnx.TensorProto.EXTERNAL
            for key, text in (("location", data.name), ("offset", offset), ("length", len(raw))):
                moved.external_data.add(key=key, value=str(text))
    if ir_version is not None:
        skeleton.ir_version = ir_version
    onnx.save_model(skeleton, str(out))
    return out


def _copy_field(target: Message, field_: FieldDescriptor, value: object) -> None:
    # protobuf 7 has is_repeated and no label; older releases the reverse
    if getattr(field_, "is_repeated", None) or getattr(field_, "label", None) == FieldDescriptor.LABEL_REPEATED:
        getattr(target, field_.name).extend(value)
    elif field_.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(target, field_.name).CopyFrom(value)
    else:
        setattr(target, field_.name, value)


def opset_of(proto: onnx.ModelProto, domain: str) -> int:
    for entry in proto.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return int(entry.version)
    if domain == "":
        # IR < 3 models carry no opset_import; ONNX says that means opset 1.
        return 1
    raise GraphError(f"the model imports no opset for domain {domain!r}")


def _input_spec(value: onnx.ValueInfoProto) -> InputSpec:
    ttype = value.type.tensor_type
    dims: list[int | str] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type))
    except (KeyError, ValueError, TypeError):
        dtype = np.dtype(np.float32)
    return InputSpec(value.name, tuple(dims), dtype)


def tensor_to_array(tensor: onnx.TensorProto) -> np.ndarray:
    """A TensorProto as numpy (external data must already be loaded)."""
    return numpy_helper.to_array(tensor)


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


# --------------------------------------------------------------------------- load


def load_model(path: str | os.PathLike[str]) -> OnnxModel:
    """Read an ONNX file and normalise it (see the module docstring).

    Raises:
        ModelLoadError: the path is missing, a directory, or not a readable ONNX model.
    """
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model file {str(p)!r} does not exist")
    if p.is_dir():
        raise ModelLoadError(f"{str(p)!r} is a directory, not an ONNX model file")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning, ... on garbage
        raise ModelLoadError(f"{str(p)!r} is not a readable ONNX model ({_short(e)})") from e
    if not proto.graph.node:
        raise ModelLoadError(f"{str(p)!r} is not a readable ONNX model (its graph has no nodes)")
    try:
        onnx.external_data_helper.load_external_data_for_model(proto, str(p.parent))
    except Exception as e:
        raise ModelLoadError(f"cannot read the external data of {str(p)!r} ({_short(e)})") from e
    return normalize(proto, path=p)


def normalize(proto: onnx.ModelProto, path: Path | None = None) -> OnnxModel:
    """Normalise an in-memory model (same steps as :func:`load_model`)."""
    lifted: set[str] = set()
    for graph in iter_graphs(proto.graph):
        _densify_sparse_initializers(graph)
        lifted |= _lift_constants(graph)
        _toposort(graph, outer=_outer_names(proto.graph, graph))
    _name_nodes(proto.graph)
    return OnnxModel(proto, path, frozenset(lifted))


def normalized(model: OnnxModel) -> OnnxModel:
    """``model`` as :func:`normalize` reads it, leaving ``model`` as it is: a copy only where reading changes the
    graph (Constant nodes to lift, sparse initializers to densify), so a model already in that form, as most
    written ones are, is wrapped as it stands instead of held twice.
    """
    def changes(graph: onnx.GraphProto) -> bool:
        return bool(graph.sparse_initializer) or any(n.op_type == "Constant" for n in graph.node)

    proto = model.proto
    if any(changes(graph) for graph in iter_graphs(proto.graph)):
        return normalize(copy_proto(proto), model.path)
    # Sorting a sorted graph and naming named nodes change nothing (_toposort keeps a sorted order).
    return normalize(proto, model.path)


def _name_nodes(root: onnx.GraphProto) -> None:
    """Give unnamed nodes (and repeated names) unique names: analysis and reports key layers by node name."""
    seen: set[str] = set()
    counter = 0
    for graph in iter_graphs(root):
        for node in graph.node:
            if not node.name or node.name in seen:
                base = node.name or node.op_type
                while f"{base}_{counter}" in seen:
                    counter += 1
                node.name = f"{base}_{counter}"
                counter += 1
            seen.add(node.name)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def sparse_to_dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """A COO SparseTensorProto (linear or [NNZ, rank] indices) as a dense array."""
    values = tensor_to_array(sparse.values)
    indices = tensor_to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(sparse.dims, dtype=np.int64)), dtype=values.dtype)
    if indices.ndim == 2:  # [NNZ, rank] coordinates
        indices = np.ravel_multi_index(tuple(indices.T), tuple(sparse.dims))
    dense[indices] = values
    return dense.reshape(tuple(sparse.dims))


def _densify_sparse_initializers(graph: onnx.GraphProto) -> None:
    for sparse in graph.sparse_initializer:
        graph.initializer.append(numpy_helper.from_array(sparse_to_dense(sparse), sparse.values.name))
    del graph.sparse_initializer[:]


_CONSTANT_SCALARS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                     "value_ints": np.int64}


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The tensor a ``Constant`` node produces; None for the string forms (and a node without a value)."""
    for attr in node.attribute:
        if attr.name == "value":
            return tensor_to_array(attr.t)
        if attr.name == "sparse_value":
            return sparse_to_dense(attr.sparse_tensor)
        if attr.name in _CONSTANT_SCALARS:
            return np.asarray(helper.get_attribute_value(attr), dtype=_CONSTANT_SCALARS[attr.name])
    return None


def _lift_constants(graph: onnx.GraphProto) -> set[str]:
    """Turn Constant nodes into initializers named after their output."""
    keep: list[onnx.NodeProto] = []
    lifted: set[str] = set()
    for node in graph.node:
        value = constant_node_value(node) if node.op_type == "Constant" and node.domain in ("", "ai.onnx") else None
        if value is None:
            keep.append(node)
            continue
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        lifted.add(node.output[0])
    if lifted:
        del graph.node[:]
        graph.node.extend(keep)
    return lifted


def _outer_names(root: onnx.GraphProto, graph: onnx.GraphProto) -> set[str]:
    """Names visible from outside ``graph`` (everything in the root, for subgraphs)."""
    if graph is root:
        return set()
    names: set[str] = set()
    for g in iter_graphs(root):
        if g is graph:
            continue
        names.update(i.name for i in g.input)
        names.update(t.name for t in g.initializer)
        for n in g.node:
            names.update(n.output)
    return names


def _toposort(graph: onnx.GraphProto, outer: set[str]) -> None:
    local = {o for n in graph.node for o in n.output}
    available = set(outer) | {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            # A subgraph may read names of this scope: its node must come after their producers.
            needed = set(node.input) | (subgraph_free_names(node) & local)
            if needed <= available:
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted(set(rest[0].input) - available)
            raise ModelLoadError(
                f"node {rest[0].name!r} ({rest[0].op_type}) reads {missing}, which no node, "
                "input or initializer provides (or the graph has a cycle)"
            )
        pending = rest
    if [id(n) for n in ordered] != [id(n) for n in graph.node]:
        copies = [onnx.NodeProto() for _ in ordered]
        for c, n in zip(copies, ordered):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def subgraph_free_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    free: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for sub in iter_graphs(g):
                local = {i.name for i in sub.input} | {t.name for t in sub.initializer}
                for n in sub.node:
                    local.update(n.output)
                for n in sub.node:
                    free.update(x for x in n.input if x and x not in local)
    return free


# --------------------------------------------------------------------------- shapes


def resolve_input_shapes(
    model: OnnxModel, overrides: Mapping[str, tuple[int, ...]] | None = None, batch: int = 1
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for every runtime input.

    A leading symbolic dim is taken as the batch (``batch``); other symbolic dims
    must come from ``overrides``.

    Raises:
        GraphError: an input has a symbolic non-batch dim and no override, or an
            override names an unknown input or has the wrong rank.
    """
    overrides = dict(overrides or {})
    specs = {s.name: s for s in model.inputs}
    for name, shape in overrides.items():
        if name not in specs:
            raise GraphError(f"`input_shapes` names {name!r}, but the model's inputs are {sorted(specs)}",
                             parameters=("input_shapes",))
        if specs[name].rank and len(shape) != specs[name].rank:
            raise GraphError(
                f"`input_shapes` gives {name!r} rank {len(shape)}, but the model declares "
                f"{list(specs[name].shape)}", parameters=("input_shapes",)
            )
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs.values():
        if spec.name in overrides:
            shapes[spec.name] = tuple(int(d) for d in overrides[spec.name])
            continue
        dims: list[int] = []
        for axis, d in enumerate(spec.shape):
            if isinstance(d, int) and d > 0:
                dims.append(d)
            elif axis == 0:
                dims.append(batch)
            else:
                raise GraphError(
                    f"input {spec.name!r} has symbolic dim {d!r} at axis {axis} "
                    f"(shape {list(spec.shape)}); give its shape in `input_shapes`", parameters=("input_shapes",)
                )
        shapes[spec.name] = tuple(dims)
    return shapes


# --------------------------------------------------------------------------- save


def save_model(model: OnnxModel | onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` atomically with an IR version onnxruntime accepts.

    Writes to a temporary file in the destination directory, then renames it over
    ``path``; on any failure no file (partial or otherwise) is left at ``path``.
    Models over protobuf's 2 GiB limit get their weights in ``<name>.data`` beside it.

    Raises:
        ModelLoadError: the directory is missing or not writable.
    """
    proto = model.proto if isinstance(model, OnnxModel) else model
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ModelLoadError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ModelLoadError(f"cannot write {str(out)!r}: directory {str(parent)!r} is not writable")
    ir_version = save_ir_version(proto)
    try:
        with atomic_output(out) as tmp:
            if proto_bytes(proto) > _PROTO_LIMIT:
                # onnx moves the weights out of the message it saves this way, so it gets a copy.
                to_save = copy_proto(proto)
                to_save.ir_version = ir_version
                onnx.save_model(
                    to_save, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=out.name + ".data", size_threshold=1024,
                )
            else:
                _save_as_ir(proto, tmp, ir_version)
    except OSError as e:
        raise ModelLoadError(f"cannot write {str(out)!r} ({_short(e)})") from e
    return out


def _save_as_ir(proto: onnx.ModelProto, path: Path, ir_version: int) -> None:
    # The caller's message with the written IR version for the time of the write: a copy of a
    # large model to change one header field would double its memory.
    original = proto.ir_version
    proto.ir_version = ir_version
    try:
        onnx.save_model(proto, str(path))
    finally:
        proto.ir_version = original


def save_ir_version(proto: onnx.ModelProto) -> int:
    """The IR version a written model gets: at most :data:`SAVE_IR_VERSION` where its opsets allow it.

    Vendor compilers lag behind onnx (a model of IR 11+ is refused by parsers built
    against older onnx releases), so a higher IR is lowered to the larger of 10 and the
    lowest IR the model's opset imports need; an IR already at or below 10 is kept.
    """
    ir = int(proto.ir_version) or MAX_IR_VERSION
    if ir <= SAVE_IR_VERSION:
        return ir
    needed = helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    return min(ir, MAX_IR_VERSION, max(SAVE_IR_VERSION, needed))


def is_float_tensor(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in _FLOAT_TYPES
