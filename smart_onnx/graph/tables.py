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


def lookup_tables(model: OnnxModel) -> set[str]:
    """Initializers read as the data of a main-graph ``Gather`` whose indices depend on a graph input.

    Indices computed from an input's shape count too (BERT's position and token-type tables: a
    Slice of positions up to the sequence length): a held-out sequence longer than every
    calibration sequence would read rows that training never reached.
    """
    view = GraphView(model)
    from_inputs = set(view.inputs)
    tables: set[str] = set()
    for node in view.nodes:
        if node.op_type == "Gather" and len(node.input) >= 2:
            data, indices = node.input[0], node.input[1]
            if data in view.initializers and indices in from_inputs:
                tables.add(data)
        if any(name in from_inputs for name in node.input):
            from_inputs.update(o for o in node.output if o)
    return tables


def token_inputs(model: OnnxModel) -> dict[str, int]:
    """Graph inputs that are the indices of a ``Gather`` (axis 0) of an initializer table: input -> table rows.

    The ids of a token embedding, which augmentation may replace by any row of the table.
    """
    view = GraphView(model)
    found: dict[str, int] = {}
    for node in view.nodes:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in view.inputs:
            continue
        table = view.initializers.get(node.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if table is not None and axis == 0 and table.dims:
            found[node.input[1]] = min(found.get(node.input[1], table.dims[0]), int(table.dims[0]))
    return found
