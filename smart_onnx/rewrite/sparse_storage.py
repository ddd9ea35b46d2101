"""Store chosen initializers as COO ``sparse_initializer``s where that is smaller on disk.

The COO form holds the non-zero values plus one int64 linear index per value, so
for fp32 it pays off above roughly 2/3 zeros. The choice compares the serialised
byte sizes of the dense and the sparse protos, so other dtypes and protobuf
overheads are accounted for exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from smart_onnx.model import OnnxModel, iter_graphs, tensor_to_array
from smart_onnx.rewrite.passes import Pass, PassResult

__all__ = ["SPARSE_FORMATS", "StoreSparse", "to_coo"]

log = logging.getLogger(__name__)

SPARSE_FORMATS = ("auto", "dense", "coo")
# sparse_initializer entered the IR in version 6.
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
    """Move the named initializers to ``sparse_initializer`` per ``fmt`` ("auto", "dense" or "coo")."""

    def __init__(self, names: Iterable[str], fmt: str = "auto") -> None:
        if fmt not in SPARSE_FORMATS:
            raise ValueError(f"fmt must be one of {SPARSE_FORMATS}, got {fmt!r}")
        self.names = set(names)
        self.fmt = fmt

    def call(self, model: OnnxModel) -> PassResult:
        if self.fmt == "dense" or not self.names:
            return PassResult(model, False)
        out = model.copy()
        moved = [name for graph in iter_graphs(out.graph) for name in self._store(graph)]
        if moved and out.proto.ir_version < _MIN_SPARSE_IR:
            log.info("raising the IR version from %d to %d for sparse initializers",
                     out.proto.ir_version, _MIN_SPARSE_IR)
            out.proto.ir_version = _MIN_SPARSE_IR
        return PassResult(out if moved else model, bool(moved))

    def _store(self, graph: onnx.GraphProto) -> list[str]:
        # A tensor that is also a graph input or output must stay a plain (overridable/returnable) initializer.
        exposed = {v.name for v in graph.input} | {v.name for v in graph.output}
        keep: list[onnx.TensorProto] = []
        moved: list[str] = []
        for tensor in graph.initializer:
            sparse = to_coo(tensor) if tensor.name in self.names and tensor.name not in exposed else None
            if sparse is not None and (self.fmt == "coo" or sparse.ByteSize() < tensor.ByteSize()):
                graph.sparse_initializer.append(sparse)
                moved.append(tensor.name)
                log.debug("%s stored as COO (%d -> %d bytes)", tensor.name, tensor.ByteSize(), sparse.ByteSize())
            else:
                keep.append(tensor)
        if moved:
            kept = [onnx.TensorProto() for _ in keep]
            for copy, tensor in zip(kept, keep):
                copy.CopyFrom(tensor)
            del graph.initializer[:]
            graph.initializer.extend(kept)
        return moved
