"""Small helpers shared by the rewrite passes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from smart_onnx.model import iter_graphs

__all__ = ["all_names", "replace_tensor", "unique_name"]


def replace_tensor(tensor: onnx.TensorProto, array: np.ndarray) -> None:
    """Give ``tensor`` new contents in place, keeping its name, doc string and metadata."""
    new = numpy_helper.from_array(array, tensor.name)
    new.doc_string = tensor.doc_string
    new.metadata_props.extend(tensor.metadata_props)
    tensor.CopyFrom(new)


def all_names(root: onnx.GraphProto) -> set[str]:
    """Every value, initializer and node name in ``root`` and its subgraphs."""
    names: set[str] = set()
    for graph in iter_graphs(root):
        names.update(v.name for v in [*graph.input, *graph.output, *graph.value_info])
        names.update(t.name for t in graph.initializer)
        for node in graph.node:
            names.update(node.output)
            names.add(node.name)
    return names


def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_<n>`` for the first free ``n``; the result is added to ``taken``."""
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name
