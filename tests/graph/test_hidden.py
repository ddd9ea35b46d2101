"""The hidden dimension (the residual stream) as channels: embeddings, every sublayer's output, every LayerNorm."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR, relative_difference
from smart_onnx.executor import Executor
from smart_onnx.graph import Role, analyze
from smart_onnx.rewrite import apply_channel_masks, set_weights, weigh_statistics
from smart_onnx.search.space import ChannelSpace
from tests.transformers import decoder, encoder, token_batch

HIDDEN = 32
MODELS = {
    "classifier-decomposed-layernorm": lambda: encoder(opset=14, classes=3),
    "classifier-fused-layernorm": lambda: encoder(opset=17, classes=3),
    "causal-decoder-decomposed-layernorm": lambda: decoder(opset=14),
    "causal-decoder-fused-layernorm": lambda: decoder(opset=17),
    "causal-decoder-tied-lm-head": lambda: decoder(opset=17, tied=True),
}


def _analysis(model):
    return analyze(model, {"input_ids": (1, 8)}, measure_shapes=Executor(model).value_shapes)


def _hidden(analysis):
    return next(g for g in analysis.groups if any(s.tensor == "tokens.weight" for s in g.slices))


def _shape(model, name: str) -> tuple[int, ...]:
    return next(tuple(t.dims) for t in model.graph.initializer if t.name == name)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_residual_stream_is_one_group_through_every_layernorm(name: str) -> None:
    model = MODELS[name]()
    g = _hidden(_analysis(model))
    assert g.frozen is None and g.channels == HIDDEN
    assert {(s.tensor, s.axis) for s in g.slices if s.role is Role.EMBEDDING} == {
        ("tokens.weight", 1), ("positions.weight", 1)}
    assert {r for r in g.roots if "MatMul" in r} == {f"/blocks.{i}/{p}/MatMul" for i in (0, 1)
                                                     for p in ("attn/out", "ffn/ffn.2")}
    readers = {f"/blocks.{i}/{p}/MatMul" for i in (0, 1) for p in ("attn/q", "attn/k", "attn/v", "ffn/ffn.0")}
    assert readers <= set(g.layers)
    # Every LayerNorm takes its statistics over the kept channels: a fused one once, a decomposed one twice
    # (the mean, and the mean of the squared deviation); the pooling ReduceMean over tokens is no statistic.
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"
             or (n.op_type == "ReduceMean" and "/ln" in n.name)]
    assert {s.node for s in g.statistics} == {n.name for n in norms} and len(norms) in (5, 10)
    assert all(s.role is Role.STATISTICS and s.axis_size == HIDDEN for s in g.statistics)
    # Shape entries read from the stream are pinned (written as constants when it shrinks): the head size
    # d // heads, and the width d of attention's reshape(b, s, d) back, which is the heads' count, not the stream's.
    assert {(e.op_type, e.old_value) for e in g.edits if e.per_channel == 0} == {("Concat", 8), ("Concat", 32)}


def test_a_tied_lm_head_reads_the_hidden_channels_of_the_embedding_table() -> None:
    """One initializer is the Gather's table and, through a Transpose, the LM head's weight: its columns are the
    hidden channels for both, cut once; its rows, the vocabulary, reach the logits and stay."""
    model = decoder(opset=17, tied=True)
    analysis = _analysis(model)
    g = _hidden(analysis)
    assert g.frozen is None and "/MatMul" in g.layers
    assert {(s.role, s.axis) for s in g.slices if s.tensor == "tokens.weight"} == {
        (Role.EMBEDDING, 1), (Role.CONSUMER_WEIGHT, 1)}
    assert analysis.group_of("/MatMul").frozen.startswith("its channels reach graph output 'output'")


def test_a_sentence_encoder_keeps_its_hidden_width() -> None:
    g = _hidden(_analysis(encoder(opset=14)))  # its output is the mean-pooled hidden states
    assert g.frozen is not None and "reach graph output 'output'" in g.frozen


def _masked(model, space: ChannelSpace, mask: torch.Tensor, feeds):
    """The executor's outputs under ``mask``, and the model with the mask's zeros written into its weights."""
    executor = Executor(model)
    transforms = space.transforms(mask)
    with torch.no_grad():
        outputs = {k: v.numpy() for k, v in executor(feeds, transforms=transforms).items()}
        zeroed = {n: fn(executor.weights.get(n)).numpy() for n, fn in transforms.items() if isinstance(n, str)}
    return outputs, set_weights(model, zeroed, validate=False)


def _mask(space: ChannelSpace, drop: dict[int, list[int]]) -> torch.Tensor:
    mask = torch.ones(space.num_units)
    for group, start in zip(space.groups, space.offsets):
        mask[[start + c for c in drop.get(group.id, [])]] = 0
    return mask


@pytest.mark.parametrize("only_hidden", [False, True], ids=["with-heads-and-ffn", "hidden-only"])
@pytest.mark.parametrize("name", list(MODELS))
def test_removing_hidden_channels_is_the_masked_model_in_onnxruntime(name: str, only_hidden: bool) -> None:
    model = MODELS[name]()
    analysis = _analysis(model)
    hidden = _hidden(analysis)
    space = ChannelSpace(analysis, analysis.groups, {t.name: tuple(t.dims) for t in model.graph.initializer})
    rng = np.random.default_rng(0)
    drop = {g.id: rng.choice(g.channels, g.channels // 4, replace=False).tolist() for g in space.groups
            if g is hidden or not only_hidden}
    mask = _mask(space, drop)
    removed = apply_channel_masks(model, analysis, space.export(mask.bool()))
    onnx.checker.check_model(removed.proto, full_check=True)
    assert _shape(removed, "tokens.weight") == (50, HIDDEN - 8)
    assert _shape(removed, "positions.weight") == (8, HIDDEN - 8)

    feeds = {"input_ids": token_batch(6, seed=2)}
    masked_executor, zeros_only = _masked(model, space, mask, feeds)
    weighed = {node: w.numpy() for node, w in space.statistics(mask).items()}
    assert set(weighed) == {s.node for s in hidden.statistics}
    masked = run_model(make_session(weigh_statistics(zeros_only, weighed)), feeds)
    pruned = run_model(make_session(removed), feeds)
    # The masked model (statistics over the kept channels) is the pruned one, in onnxruntime and in the executor.
    assert relative_difference(masked, pruned) < TOLERANCE_FLOOR
    assert relative_difference(masked, masked_executor) < 1e-5
    # Zeros alone are not: the original LayerNorms would still divide by all 32 channels.
    assert relative_difference(run_model(make_session(zeros_only), feeds), pruned) > 1e-2


def test_the_executor_weighs_a_layernorm_as_its_onnx_form_does() -> None:
    """Weighted means (a soft mask during the search) in the executor and in the verification's ONNX form agree."""
    model = encoder(opset=17, classes=3)
    analysis = _analysis(model)
    space = ChannelSpace(analysis, analysis.groups, {t.name: tuple(t.dims) for t in model.graph.initializer})
    mask = torch.from_numpy(np.random.default_rng(1).uniform(0.05, 1.0, space.num_units).astype(np.float32))
    feeds = {"input_ids": token_batch(4, seed=5)}
    got, zeros_only = _masked(model, space, mask, feeds)
    weighed = {node: w.numpy() for node, w in space.statistics(mask).items()}
    assert all(abs(float(w.mean()) - 1.0) < 1e-5 for w in weighed.values())  # mean 1 over the channels
    reference = weigh_statistics(zeros_only, weighed)
    assert relative_difference(run_model(make_session(reference), feeds), got) < 1e-5
    assert {numpy_helper.to_array(t).shape for t in reference.graph.initializer if "channel_weights" in t.name} == {
        (1, 1, HIDDEN)}
