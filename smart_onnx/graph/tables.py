"""Lookup tables: initializers whose rows are picked by the model's inputs (token embeddings).

A ``Gather`` of a weight table by indices that come from the data (token ids) reads only the
rows the data names. Trained on a calibration set, such a table has gradient on the rows of
the calibration tokens alone: those rows move, every other row stays, and the layers after it
are fitted to the moved rows, so a held-out sentence whose words the calibration set lacked
meets a table half old and half new. Training keeps them fixed (search/trainer.py).
"""

from __future__ import annotations

from smart_onnx.graph.view import GraphView
from smart_onnx.model import OnnxModel

__all__ = ["lookup_tables", "token_inputs"]


# Ops that read rows of a table by indices: op -> (indices input, table input) pairs. com.microsoft
# EmbedLayerNormalization (onnxruntime's fused BERT embeddings) looks up word ids in input 2 and segment ids in
# input 4; its position table (input 3) is read by position ids or, without them, by 0 .. S-1.
_LOOKUPS = {"Gather": ((1, 0),), "EmbedLayerNormalization": ((0, 2), (1, 4), (8, 3))}
# EmbedLayerNormalization's tables read by the sequence's shape, when its word ids come from the data.
_SHAPE_READ = {"EmbedLayerNormalization": (0, 3)}


def _lookups(node) -> tuple[tuple[int, int], ...]:
    if node.op_type == "Gather" and next((a.i for a in node.attribute if a.name == "axis"), 0) != 0:
        return ()
    return tuple((i, t) for i, t in _LOOKUPS.get(node.op_type, ()) if t < len(node.input) and i < len(node.input)
                 and node.input[i] and node.input[t])


def lookup_tables(model: OnnxModel) -> set[str]:
    """Initializers whose rows a main-graph lookup (``Gather``, ``EmbedLayerNormalization``) reads by indices that
    depend on a graph input.

    Indices computed from an input's shape count too (BERT's position and token-type tables: a
    Slice of positions up to the sequence length): a held-out sequence longer than every
    calibration sequence would read rows that training never reached.
    """
    view = GraphView(model)
    from_inputs = set(view.inputs)
    tables: set[str] = set()
    for node in view.nodes:
        for indices, table in _lookups(node):
            if node.input[table] in view.initializers and node.input[indices] in from_inputs:
                tables.add(node.input[table])
        ids, table = _SHAPE_READ.get(node.op_type, (-1, -1))
        if 0 <= ids < len(node.input) and node.input[ids] in from_inputs and table < len(node.input) \
                and node.input[table] in view.initializers:
            tables.add(node.input[table])
        if any(name in from_inputs for name in node.input):
            from_inputs.update(o for o in node.output if o)
    return tables


def token_inputs(model: OnnxModel) -> dict[str, int]:
    """Graph inputs that are the indices of a lookup of an initializer table (directly or through ``Cast``,
    as onnxruntime's optimizer casts ids to int32): input -> table rows.

    The ids of a token embedding, which augmentation may replace by any row of the table.
    """
    view = GraphView(model)
    ids_of = {name: name for name in view.inputs}  # value -> the graph input it is a cast of
    found: dict[str, int] = {}
    for node in view.nodes:
        if node.op_type == "Cast" and node.input and node.input[0] in ids_of:
            ids_of[node.output[0]] = ids_of[node.input[0]]
        for indices, table_input in _lookups(node):
            source, table = ids_of.get(node.input[indices]), view.initializers.get(node.input[table_input])
            if source is not None and table is not None and table.dims:
                found[source] = min(found.get(source, table.dims[0]), int(table.dims[0]))
    return found
