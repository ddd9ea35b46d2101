"""activation_stats given a space's layers: the same statistics as the full run, for those layers only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smart_onnx.data import Dataset
from smart_onnx.executor import Executor
from smart_onnx.graph import analyze
from smart_onnx.model import iter_graphs, normalize
from smart_onnx.search import BlockSpace, ChannelSpace, NMSpace, SearchConfig
from smart_onnx.search.stats import activation_stats

CONFIG = SearchConfig(batch_size=4, stats_batches=2)


def _spaces(model, analysis):
    shapes = {t.name: tuple(int(d) for d in t.dims) for g in iter_graphs(model.graph) for t in g.initializer}
    return {
        "block": BlockSpace(analysis.layers[:-1], (4, 4, 1, 1)),
        "channel": ChannelSpace(analysis, analysis.groups, shapes),
        "nm": NMSpace(analysis.layers, 2, 4),
    }


@pytest.mark.parametrize("kind", ["block", "channel", "nm"])
def test_stats_of_a_spaces_layers_equal_the_full_runs(zoo_export, kind: str) -> None:
    zm = zoo_export("resnet_like", "legacy17")
    model = normalize(zm.proto)
    analysis = analyze(model)
    space = _spaces(model, analysis)[kind]
    (name, example), = zm.feeds.items()
    rng = np.random.default_rng(0)
    data = Dataset({name: rng.standard_normal((8, *example.shape[1:])).astype(np.float32)})
    executor = Executor(model)

    full = activation_stats(executor, data, CONFIG)
    given = activation_stats(executor, data, CONFIG, space.scored_layers)

    names = {layer.name for layer in space.scored_layers}
    assert names and set(given) == names & set(full)
    for layer, value in given.items():
        assert torch.equal(value, full[layer])
    if kind == "block":
        assert len(given) < len(full)  # the last layer is not in this space
    weights = dict(executor.weights.named_weights())
    mine, theirs = space.initial_scores(weights, given), space.initial_scores(weights, full)
    assert torch.equal(mine, theirs)

def test_all_analysed_layers_give_the_default_statistics(zoo_export) -> None:
    zm = zoo_export("mlp_gemm", "legacy17")
    model = normalize(zm.proto)
    (name, example), = zm.feeds.items()
    data = Dataset({name: np.random.default_rng(1).standard_normal((8, *example.shape[1:])).astype(np.float32)})
    executor = Executor(model)
    full = activation_stats(executor, data, CONFIG)
    given = activation_stats(executor, data, CONFIG, analyze(model).layers)
    assert full and full.keys() == given.keys()
    assert all(torch.equal(full[k], given[k]) for k in full)


def test_a_layer_reading_the_graph_input_gets_statistics(zoo_export) -> None:
    """The stem conv multiplies the graph input itself: its statistics are the input's per-channel mean square."""
    zm = zoo_export("resnet_like", "legacy17")
    model = normalize(zm.proto)
    (name, example), = zm.feeds.items()
    x = np.random.default_rng(2).standard_normal((8, *example.shape[1:])).astype(np.float32) * 3
    executor = Executor(model)
    stats = activation_stats(executor, Dataset({name: x}), SearchConfig(batch_size=8, stats_batches=1))
    stems = [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] == name]
    assert stems and all(s in stats for s in stems)
    want = torch.from_numpy((x.astype(np.float64) ** 2).mean(axis=(0, 2, 3)))
    assert torch.allclose(stats[stems[0]], want)
