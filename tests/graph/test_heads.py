"""Attention heads as coupling-group channels, on encoders and a decoder exported by torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from devkit.zoo import export, vit_block
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.executor import Executor
from smart_onnx.graph import Role, analyze
from smart_onnx.model import normalize
from smart_onnx.rewrite import apply_channel_masks, set_weights, weigh_statistics
from smart_onnx.search.space import ChannelSpace
from tests.transformers import decoder, encoder, token_batch

HEADS, HEAD_DIM, HIDDEN = 4, 8, 32
MODELS = {
    "encoder-decomposed-layernorm": lambda: encoder(opset=14),
    "encoder-fused-layernorm": lambda: encoder(opset=17),
    "encoder-fused-qkv": lambda: encoder(opset=17, fused_qkv=True),
    "causal-decoder": lambda: decoder(opset=14),
}


def _analysis(model):
    return analyze(model, {"input_ids": (1, 8)}, measure_shapes=Executor(model).value_shapes)


def _head_groups(analysis):
    return [g for g in analysis.groups if any("/attn/" in layer and "/out/" not in layer for layer in g.roots)]


@pytest.mark.parametrize("name", list(MODELS))
def test_each_attention_block_is_one_group_of_heads(name: str) -> None:
    model = MODELS[name]()
    groups = _head_groups(_analysis(model))
    assert len(groups) == 2  # one per block
    for g in groups:
        assert g.frozen is None
        assert g.channels == HEADS
        assert any("/attn/out/" in layer for layer in g.layers)  # the output projection reads the heads
        producer = [s for s in g.slices if s.role is Role.PRODUCER_WEIGHT]
        assert all(set(s.per_channel_positions(HEADS)) == {HEAD_DIM * (s.axis_size // HIDDEN)} for s in producer)
        consumer = [s for s in g.slices if s.role is Role.CONSUMER_WEIGHT]
        assert [s.axis_size for s in consumer] == [HIDDEN]
        edits = {(e.op_type, e.old_value, e.per_channel * int(e.index_map.counts(np.arange(1)).sum())) for e in g.edits}
        assert ("Concat", HEADS, 1) in edits  # the [B, S, H, D] target: one head less per head removed
        assert ("Concat", HIDDEN, HEAD_DIM) in edits  # the [B, S, H*D] target back: D less per head


def _initializer(model, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _removed_and_masked(model, analysis, keep, feeds):
    """onnxruntime outputs of the model with channels removed and with them zeroed (the search's mask)."""
    removed = apply_channel_masks(model, analysis, keep)
    onnx.checker.check_model(removed.proto, full_check=True)
    space = ChannelSpace(analysis, analysis.groups, {t.name: tuple(t.dims) for t in model.graph.initializer})
    mask = np.ones(space.num_units, dtype=np.float32)
    for gid, kept in keep.items():
        group = next(g for g in space.groups if g.id == gid)
        offset = space.offsets[space.groups.index(group)]
        mask[offset:offset + group.channels] = 0
        mask[[offset + k for k in kept]] = 1
    transforms = space.transforms(torch.from_numpy(mask))
    zeroed = {n: fn(torch.from_numpy(_initializer(model, n).copy())).numpy() for n, fn in transforms.items()
              if isinstance(n, str)}  # weights; ChannelWeights keys weigh LayerNorms over removed hidden channels
    weighed = {node: w.numpy() for node, w in space.statistics(torch.from_numpy(mask)).items()}
    expected = run_model(make_session(weigh_statistics(set_weights(model, zeroed), weighed)), feeds)
    got = run_model(make_session(removed), feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5 * float(np.abs(value).max()))
    return removed


@pytest.mark.parametrize("name", list(MODELS))
def test_removing_heads_matches_zeroing_them_in_onnxruntime(name: str) -> None:
    model = MODELS[name]()
    analysis = _analysis(model)
    groups = _head_groups(analysis)
    keep = {groups[0].id: [0, 2, 3], groups[1].id: [1]}  # one head less in block 0, three in block 1
    removed = _removed_and_masked(model, analysis, keep, {"input_ids": token_batch(5, seed=3)})
    q_rows = {s.tensor: _initializer(removed, s.tensor).shape[s.axis] for s in groups[0].slices
              if s.role is Role.PRODUCER_WEIGHT}
    assert set(q_rows.values()) <= {3 * HEAD_DIM, 9 * HEAD_DIM}  # 3 heads left (x3 in a fused QKV weight)
    # The Reshape targets were rewritten: [.., 3, 8] into the heads, [.., 24] out of them.
    names = [n.output[0] for n in removed.graph.node if n.op_type == "Reshape" and n.name.startswith("/blocks.0/")]
    reshaped = Executor(removed).value_shapes({"input_ids": (1, 8)}, names).values()
    assert (3, HEAD_DIM) in {d[-2:] for d in reshaped} and 3 * HEAD_DIM in {d[-1] for d in reshaped}


def test_a_timm_style_fused_qkv_reshaped_to_3_heads_dim_is_a_group_of_heads() -> None:
    module, example = vit_block()  # qkv(x).reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4); q, k, v = qkv[i]
    model = normalize(export(module, example, dynamo=False, opset=17))
    analysis = analyze(model, {model.inputs[0].name: (1, 3, 16, 16)}, measure_shapes=Executor(model).value_shapes)
    heads = next(g for g in analysis.groups if any("qkv" in layer for layer in g.roots))
    assert heads.frozen is None and heads.channels == 2
    removed = _removed_and_masked(model, analysis, {heads.id: [1]}, {model.inputs[0].name: example.numpy()})
    qkv = next(s.tensor for s in heads.slices if s.role is Role.PRODUCER_WEIGHT)
    assert _initializer(removed, qkv).shape == (32, 48)  # 3 x 2 heads x 16 -> 3 x 1 head x 16
