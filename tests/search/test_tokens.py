"""Token inputs: their embedding tables are never trained (graph/tables.py)."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from smart_onnx.data import Dataset
from smart_onnx.graph.tables import lookup_tables
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.transformers import encoder, token_batch


def _initializers(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_token_table_is_a_lookup_table_and_the_layers_are_not() -> None:
    model = encoder()
    tables = lookup_tables(model)
    arrays = _initializers(model)
    assert len(tables) == 1
    (name,) = tables
    assert arrays[name].shape == (50, 32)  # [vocab, width], gathered by input_ids
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] == name]
    assert gathers and gathers[0].input[1] == "input_ids"


def test_prune_keeps_the_token_table_and_trains_the_rest() -> None:
    model = encoder()
    before = _initializers(model)
    (table,) = lookup_tables(model)
    data = Dataset({"input_ids": token_batch(24, seed=1)})
    config = SearchConfig(sparsity=0.5, steps=4, finetune_steps=4, batch_size=8, refit=False, time_budget=None)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), search=config, latency=False))
    after = _initializers(outcome.model.proto)
    np.testing.assert_array_equal(after[table], before[table])
    # Unpruned trained tensors (LayerNorm scales) still moved: only the table was held fixed.
    moved = [n for n, a in before.items() if n != table and a.ndim == 1 and a.size > 1 and n in after
             and not np.array_equal(after[n], a)]
    assert moved

