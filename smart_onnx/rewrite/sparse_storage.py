"""How a rewritten model stores its pruned weights: plain dense initializers, or COO on request.

``dense`` (the default) leaves every weight a plain initializer, zeros included: the form
every ONNX consumer reads (TensorRT, OpenVINO, TVM, NPU compilers) and the only one the
full ONNX checker accepts as an initializer feeding Conv/Gemm/MatMul.

``coo`` stores each named weight as a ``Constant`` node whose ``sparse_value`` holds the
non-zeros and their int64 linear indices. Standard ONNX (opset 11 and later) says such a
node produces a dense tensor, so the model passes the full checker; onnxruntime expands
it at load. Compilers that read weights only from initializers do not, which makes the
format an onnxruntime-only choice. A COO ``sparse_initializer`` is never written: ONNX
shape inference types it as a sparse tensor, which no standard op accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from smart_onnx.errors import ConstraintError
from smart_onnx.model import OnnxModel, iter_graphs, tensor_to_array
from smart_onnx.rewrite._util import all_names, unique_name
from smart_onnx.rewrite.passes import Pass, PassResult

__all__ = ["COO_MIN_OPSET", "SPARSE_FORMATS", "StoreSparse", "to_coo"]

log = logging.getLogger(__name__)

SPARSE_FORMATS = ("dense", "coo")
# Constant's sparse_value attribute entered the default domain in opset 11; sparse tensors in IR 6.
COO_MIN_OPSET = 11
_MIN_SPARSE_IR = 6


def to_coo(tensor: onnx.TensorProto) -> onnx.SparseTensorProto:
    """``tensor`` as a COO sparse tensor: its non-zeros and their int64 linear indices."""
    flat = tensor_to_array(tensor).reshape(-1)
    indices = np.flatnonzero(flat).astype(np.int64)
    sparse = onnx.SparseTensorProto()
    sparse.values.CopyFrom(numpy_helper.from_array(flat[indices], tensor.name))
    sparse.values.doc_string = tensor.doc_string
    sparse.indices.CopyFrom(numpy_helper.from_array(indices, tensor.name + "_indices"))
    sparse.dims.extend(tensor.dims)
    return sparse


class StoreSparse(Pass):
    """Store the named initializers per ``fmt``: ``"dense"`` changes nothing, ``"coo"`` makes them COO Constants.

    A tensor that is also a graph input or output stays a plain initializer (an input may
    be overridden at run time and an output must be returned).
    """

    def __init__(self, names: Iterable[str], fmt: str = "dense") -> None:
        if fmt not in SPARSE_FORMATS:
            raise ValueError(f"fmt must be one of {SPARSE_FORMATS}, got {fmt!r}")
        self.names = set(names)
        self.fmt = fmt

    def requires(self, model: OnnxModel) -> None:
        if self.fmt != "coo" or not self.names:
            return
        opset = model.opset
        if opset < COO_MIN_OPSET:
            raise ConstraintError(
                f"sparse format 'coo' stores weights as Constant nodes with a sparse_value, which ONNX allows from "
                f"opset {COO_MIN_OPSET}; this model imports opset {opset}. Store the weights dense instead"
            )

    def call(self, model: OnnxModel) -> PassResult:
        if self.fmt == "dense" or not self.names:
            return PassResult(model, False)
        out = model.copy()
        taken = all_names(out.graph)
        moved = [name for graph in iter_graphs(out.graph) for name in self._store(graph, taken)]
        if moved and out.proto.ir_version < _MIN_SPARSE_IR:
            log.info("raising the IR version from %d to %d for sparse tensors", out.proto.ir_version, _MIN_SPARSE_IR)
            out.proto.ir_version = _MIN_SPARSE_IR
        return PassResult(out if moved else model, bool(moved))

    def _store(self, graph: onnx.GraphProto, taken: set[str]) -> list[str]:
        exposed = {v.name for v in graph.input} | {v.name for v in graph.output}
        keep: list[onnx.TensorProto] = []
        constants: list[onnx.NodeProto] = []
        for tensor in graph.initializer:
            if tensor.name not in self.names or tensor.name in exposed:
                if tensor.name in self.names:
                    log.info("%s is a graph input or output: it stays a dense initializer", tensor.name)
                keep.append(tensor)
                continue
            node = helper.make_node("Constant", [], [tensor.name], name=unique_name(f"{tensor.name}_coo", taken),
                                    sparse_value=to_coo(tensor))
            constants.append(node)
            log.debug("%s stored as a COO Constant (%d -> %d bytes)", tensor.name, tensor.ByteSize(),
                      node.ByteSize())
        if constants:
            kept = [onnx.TensorProto() for _ in keep]
            for copy, tensor in zip(kept, keep):
                copy.CopyFrom(tensor)
            del graph.initializer[:]
            graph.initializer.extend(kept)
            nodes = [*constants, *graph.node]
            copies = [onnx.NodeProto() for _ in nodes]
            for copy, node in zip(copies, nodes):
                copy.CopyFrom(node)
            del graph.node[:]
            graph.node.extend(copies)
        return [node.output[0] for node in constants]
