"""Edit the integers a channel removal shrinks: shape constants and integer attributes.

An edit names a node, one of its inputs (a 1-D int constant: Split sizes, Slice
bounds, a Reshape target) or one of its integer attributes (Split ``split`` before
opset 13, Conv ``group``), an entry, and the entry's old and new value. A constant
read by anything else is copied for the edited node; a Split without explicit
sizes gets them (from shape inference of the original model) before the edit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from smart_onnx.errors import RewriteError
from smart_onnx.model import OnnxModel, iter_graphs, tensor_to_array
from smart_onnx.rewrite._util import all_names, replace_tensor, unique_name

__all__ = ["EditKey", "ShapeEditor"]

# (node name, input index or attribute name, entry position)
EditKey = tuple[str, "int | str", int]


class ShapeEditor:
    """Applies shape edits to ``model`` (a copy, edited in place); ``original`` answers shape questions."""

    def __init__(self, model: OnnxModel, original: OnnxModel) -> None:
        self.graph = model.graph
        self.original = original
        self.nodes = {n.name: n for n in self.graph.node}
        self.inits = {t.name: t for t in self.graph.initializer}
        self.taken = all_names(model.graph)
        self._shapes: dict[str, list[int | None]] | None = None

    def apply(self, edits: Mapping[EditKey, tuple[int, int]]) -> None:
        by_target: dict[tuple[str, int | str], dict[int, tuple[int, int]]] = {}
        for (node, where, position), change in edits.items():
            by_target.setdefault((node, where), {})[position] = change
        for (node_name, where), changes in by_target.items():
            node = self.nodes[node_name]
            if isinstance(where, int):
                self._edit_input(node, where, changes)
            else:
                self._edit_attribute(node, where, changes)

    def _edit_input(self, node: onnx.NodeProto, index: int, changes: Mapping[int, tuple[int, int]]) -> None:
        if index >= len(node.input) or not node.input[index]:
            values, tensor = self._implicit_split_sizes(node, f"input {index}"), None
            _drop_attribute(node, "num_outputs")  # an explicit sizes input replaces it
        else:
            tensor = self.inits.get(node.input[index])
            if tensor is None and node.op_type == "Concat" and set(changes) == {0}:
                # A one-entry piece of a shape the analysis found read at run time from a dim the
                # weights fix (attention's reshape(b, s, d)): the new count becomes a constant.
                values = np.array([changes[0][0]], dtype=np.int64)
            elif tensor is None:
                raise RewriteError(
                    f"node {node.name!r} ({node.op_type}) reads input {index} ({node.input[index]!r}) at run time, "
                    "so its shape data cannot be edited; only constant shape inputs are supported"
                )
            else:
                values = tensor_to_array(tensor).reshape(-1).copy()
        values = _changed(values, changes, node, f"input {index}")
        if tensor is not None and self._reads(tensor.name) == 1:
            replace_tensor(tensor, values.astype(tensor_to_array(tensor).dtype))
            return
        name = unique_name(f"{node.name}_in{index}_pruned", self.taken)
        dtype = np.int64 if tensor is None else tensor_to_array(tensor).dtype
        self.graph.initializer.append(numpy_helper.from_array(values.astype(dtype), name))
        while len(node.input) <= index:
            node.input.append("")
        node.input[index] = name

    def _edit_attribute(self, node: onnx.NodeProto, name: str, changes: Mapping[int, tuple[int, int]]) -> None:
        found = next((a for a in node.attribute if a.name == name), None)
        if found is None and node.op_type == "Split" and name == "split":
            sizes = self._implicit_split_sizes(node, "attribute 'split'").tolist()
            node.attribute.append(helper.make_attribute("split", sizes))
            found = node.attribute[-1]  # append() copies: edit the stored attribute
        if found is None or found.type not in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS):
            raise RewriteError(f"node {node.name!r} ({node.op_type}) has no integer attribute {name!r} to edit")
        if found.type == onnx.AttributeProto.INT:
            found.i = int(_changed(np.array([found.i]), changes, node, f"attribute {name!r}")[0])
        else:
            values = _changed(np.array(list(found.ints), dtype=np.int64), changes, node, f"attribute {name!r}")
            del found.ints[:]
            found.ints.extend(int(v) for v in values)

    def _reads(self, name: str) -> int:
        """How many (node, slot) pairs and graph outputs read ``name``, subgraphs included."""
        count = sum(o.name == name for o in self.graph.output)
        for graph in iter_graphs(self.graph):
            count += sum(i == name for n in graph.node for i in n.input)
        return count

    def _implicit_split_sizes(self, node: onnx.NodeProto, where: str) -> np.ndarray:
        """A Split's output sizes along its axis, read from shape inference of the original model."""
        if node.op_type != "Split":
            raise RewriteError(f"node {node.name!r} ({node.op_type}) has no {where} to edit")
        shapes = self._inferred_shapes()
        rank = len(shapes.get(node.input[0]) or [])
        axis = int(next((a.i for a in node.attribute if a.name == "axis"), 0))
        axis = axis + rank if axis < 0 else axis
        sizes = [(shapes.get(o) or [None] * (axis + 1))[axis] for o in node.output]
        if rank == 0 or any(s is None for s in sizes):
            raise RewriteError(
                f"node {node.name!r} (Split) gives no split sizes and shape inference cannot tell its output "
                f"sizes along axis {axis}; give the Split explicit sizes"
            )
        return np.array(sizes, dtype=np.int64)

    def _inferred_shapes(self) -> dict[str, list[int | None]]:
        if self._shapes is None:
            inferred = onnx.shape_inference.infer_shapes(self.original.proto, data_prop=True)
            self._shapes = {}
            g = inferred.graph
            for v in [*g.input, *g.value_info, *g.output]:
                if v.type.tensor_type.HasField("shape"):
                    self._shapes[v.name] = [
                        int(d.dim_value) if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
                    ]
        return self._shapes


def _changed(
    values: np.ndarray, changes: Mapping[int, tuple[int, int]], node: onnx.NodeProto, where: str
) -> np.ndarray:
    """``values`` with each change applied, after checking the old value is what the analysis saw."""
    values = values.astype(np.int64).copy()
    for position, (old, new) in changes.items():
        if not 0 <= position < len(values) or int(values[position]) != old:
            have = int(values[position]) if 0 <= position < len(values) else "nothing"
            raise RewriteError(
                f"node {node.name!r} ({node.op_type}) has {have} at entry {position} of {where}, but the analysis "
                f"expected {old}; was the analysis made on another model?"
            )
        values[position] = new
    return values


def _drop_attribute(node: onnx.NodeProto, name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    if len(kept) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(kept)
