"""onnxruntime's fused transformer ops in channel mode: MultiHeadAttention's heads and the hidden dimension through
SkipLayerNormalization are units, as in the exported forms (tests/graph/test_heads.py, test_hidden.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from smart_onnx.errors import RewriteError
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR, relative_difference
from smart_onnx.executor import Executor
from smart_onnx.graph import Role, analyze
from smart_onnx.graph.features import feature_axes, feature_points
from smart_onnx.model import normalize
from smart_onnx.rewrite import apply_channel_masks, set_weights, weigh_statistics
from smart_onnx.search.space import ChannelSpace
from tests.transformers import contrib_transformer, token_batch

D, HEADS, FFN, S = 32, 4, 64, 8
FORMS = {"post-ln-encoder": False, "pre-ln-decoder": True}


def _feeds(pre_norm: bool, n: int, seed: int = 2) -> dict[str, np.ndarray]:
    feeds = {"input_ids": token_batch(n, seed=seed)}
    if not pre_norm:
        mask = np.ones((n, S), np.int32)
        mask[:, -3:] = np.random.default_rng(seed).integers(0, 2, (n, 3))  # some padded keys
        feeds["attention_mask"] = mask
    return feeds


def _analysis(model):
    shapes = {spec.name: (1, S) for spec in model.inputs}
    return analyze(model, shapes, measure_shapes=Executor(model).value_shapes)


def _space(model, analysis) -> ChannelSpace:
    return ChannelSpace(analysis, analysis.groups, {t.name: tuple(t.dims) for t in model.graph.initializer})


def _num_heads(model) -> dict[str, int]:
    return {n.name: helper.get_attribute_value(a) for n in model.graph.node for a in n.attribute
            if n.op_type == "MultiHeadAttention" and a.name == "num_heads"}


def _masked(model, space: ChannelSpace, mask: torch.Tensor, feeds):
    """The executor's outputs under ``mask``, and onnxruntime's on the original with the mask written in (zeros, and
    every LayerNorm over the hidden channels weighted as the masked model weighs it)."""
    executor = Executor(model)
    transforms = space.transforms(mask)
    with torch.no_grad():
        got = {k: v.numpy() for k, v in executor({k: torch.from_numpy(v) for k, v in feeds.items()},
                                                 transforms=transforms).items()}
        zeroed = {n: fn(executor.weights.get(n)).numpy() for n, fn in transforms.items() if isinstance(n, str)}
    weighed = {node: w.numpy() for node, w in space.statistics(mask).items()}
    zeros_only = set_weights(model, zeroed, validate=False)
    return got, run_model(make_session(weigh_statistics(zeros_only, weighed)), feeds), zeros_only


@pytest.mark.parametrize("form", list(FORMS))
def test_heads_hidden_and_ffn_are_units_through_the_fused_ops(form: str) -> None:
    analysis = _analysis(contrib_transformer(pre_norm=FORMS[form]))
    # Before SkipLayerNormalization and MultiHeadAttention had rules, only the two FFNs were units (2 of 13 groups).
    assert sorted(g.channels for g in analysis.prunable_groups) == [HEADS, HEADS, D, FFN, FFN]
    assert [g.roots for g in analysis.frozen_groups] == [("lm_head",) if FORMS[form] else ("classifier",)]
    for i in range(2):
        heads = analysis.group_of(f"blocks.{i}/attn/q")
        assert heads.roots == tuple(f"blocks.{i}/attn/{w}" for w in "qkv")
        assert heads.layers == (*heads.roots, f"blocks.{i}/attn/out")
        assert [(e.node, e.attribute, e.old_value, e.delta([1, 3])) for e in heads.edits] == [
            (f"blocks.{i}/attn/mha", "num_heads", HEADS, 2)]
        bias = next(s for s in heads.slices if s.tensor == f"blocks.{i}/qkv.b")
        # Head 1 owns its 8 columns in each of the Q, K and V parts of the packed bias.
        assert bias.role is Role.AFFINE_CONST and bias.removed_positions([1]).tolist() == [
            *range(8, 16), *range(D + 8, D + 16), *range(2 * D + 8, 2 * D + 16)]
        ffn = analysis.group_of(f"blocks.{i}/ffn/ffn1")
        assert {s.tensor for s in ffn.slices if s.role is Role.AFFINE_CONST} == {f"blocks.{i}/ffn1.b"}  # Bias/FastGelu
    hidden = next(g for g in analysis.prunable_groups if g.channels == D)
    assert {(s.tensor, s.axis) for s in hidden.slices if s.role is Role.EMBEDDING} == {
        ("tokens.weight", 1), ("positions.weight", 1)}
    skip_norms = [f"blocks.{i}/ln{j}" for i in range(2) for j in (1, 2)]
    # Every LayerNorm, fused into SkipLayerNormalization or not, takes its statistics over the kept channels; its
    # gamma, beta and bias (the projection's, folded in) go with the channels.
    assert {s.node for s in hidden.statistics} == {"embed/ln", *skip_norms}
    params = {s.tensor for s in hidden.slices if s.role is Role.AFFINE_CONST}
    assert {f"{n}.{p}" for n in skip_norms for p in "gb"} | {f"blocks.{i}/{b}.b" for i in range(2)
                                                             for b in ("o", "ffn2")} <= params
    readers = {f"blocks.{i}/{p}" for i in range(2) for p in ("attn/q", "attn/k", "attn/v", "ffn/ffn1")}
    roots = {f"blocks.{i}/{p}" for i in range(2) for p in ("attn/out", "ffn/ffn2")}
    assert readers <= set(hidden.layers) and set(hidden.roots) == roots
    if FORMS[form]:  # the tied LM head reads the hidden channels of the very table the Gather reads
        assert ("tokens.weight", 1, Role.CONSUMER_WEIGHT) in {(s.tensor, s.axis, s.role) for s in hidden.slices}


@pytest.mark.parametrize("only", [None, "heads", "hidden"])
@pytest.mark.parametrize("form", list(FORMS))
def test_removing_heads_hidden_and_ffn_channels_is_the_masked_model(form: str, only: str | None) -> None:
    model = contrib_transformer(pre_norm=FORMS[form])
    analysis = _analysis(model)
    space = _space(model, analysis)
    rng = np.random.default_rng(0)
    wanted = {None: (HEADS, D, FFN), "heads": (HEADS,), "hidden": (D,)}[only]
    drop = {g.id: rng.choice(g.channels, g.channels // 4, replace=False).tolist() for g in space.groups
            if g.channels in wanted}
    mask = torch.ones(space.num_units)
    for group, start in zip(space.groups, space.offsets):
        mask[[start + c for c in drop.get(group.id, [])]] = 0
    removed = apply_channel_masks(model, analysis, space.export(mask.bool()))
    onnx.checker.check_model(removed.proto, full_check=True)
    heads = HEADS - 1 if only != "hidden" else HEADS
    assert set(_num_heads(removed).values()) == {heads}
    assert removed.weight("blocks.0/qkv.b").shape == (3 * heads * D // HEADS,)
    width = D - 8 if only != "heads" else D
    assert removed.weight("tokens.weight").shape == (50, width)
    assert removed.weight("blocks.1/ln2.g").shape == removed.weight("blocks.1/ffn2.b").shape == (width,)

    feeds = _feeds(FORMS[form], 6)
    executed, masked, zeros_only = _masked(model, space, mask, feeds)
    pruned = run_model(make_session(removed), feeds)  # onnxruntime runs the rewritten fused ops
    assert relative_difference(masked, pruned) < TOLERANCE_FLOOR
    assert relative_difference(masked, executed) < 1e-5
    if only != "heads":  # zeros alone are not the pruned model: every LayerNorm would still divide by 32 channels
        assert relative_difference(run_model(make_session(zeros_only), feeds), pruned) > 1e-2


def test_the_executor_weighs_a_skip_layernorm_as_its_onnx_form_does() -> None:
    """Weighted means (the search's soft mask) in the executor's SkipLayerNormalization and in the verification's
    ONNX form agree, its sum output included (the pre-LN decoder reads it as the residual stream)."""
    model = contrib_transformer(pre_norm=True)
    analysis = _analysis(model)
    space = _space(model, analysis)
    mask = torch.from_numpy(np.random.default_rng(1).uniform(0.05, 1.0, space.num_units).astype(np.float32))
    executed, masked, _ = _masked(model, space, mask, _feeds(True, 4, seed=5))
    assert relative_difference(masked, executed) < 1e-5


def test_a_skip_layernorm_returning_its_mean_freezes_the_hidden_dimension() -> None:
    analysis = _analysis(contrib_transformer(statistics_output=True))
    frozen = [g for g in analysis.frozen_groups if g.channels == D]
    assert len(frozen) == 1 and frozen[0].frozen == (
        "node 'blocks.0/ln1' (SkipLayerNormalization) also returns its mean or inverse standard deviation "
        "('blocks.0/ln1.mean'), which would change with the channels")
    assert sorted(g.channels for g in analysis.prunable_groups) == [HEADS, HEADS, FFN, FFN]  # heads and FFN still
    with pytest.raises(RewriteError, match="'blocks.0/ln1' .SkipLayerNormalization. returns its mean"):
        weigh_statistics(contrib_transformer(statistics_output=True), {"blocks.0/ln1": np.ones((1, 1, D), np.float32)})


def _cross_attention(form: str = "projected") -> onnx.ModelProto:
    """Queries from ``x`` [N, 6, D], keys and values from ``memory`` [N, 10, D] (an encoder's output), projected by
    MatMuls; other ``form``s: the key read as given (a graph input), an attention bias, or no value input."""
    rng = np.random.default_rng(0)
    inits = {n: (rng.standard_normal((D, D)) * D ** -0.5).astype(np.float32) for n in ("wq", "wk", "wv", "wo")}
    inits["b"] = (0.1 * rng.standard_normal(3 * D)).astype(np.float32)
    mha = {"projected": ["q", "k", "v", "b"], "key-input": ["q", "keys", "v", "b"],
           "attention-bias": ["q", "k", "v", "b", "", "scores_bias"], "no-value": ["q", "k", ""]}[form]
    inits["scores_bias"] = np.zeros((1, HEADS, 6, 10), np.float32)
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
             helper.make_node("MatMul", ["memory", "wk"], ["k"], name="k"),
             helper.make_node("MatMul", ["memory", "wv"], ["v"], name="v"),
             helper.make_node("MultiHeadAttention", mha, ["a"], name="cross", domain="com.microsoft", num_heads=HEADS),
             helper.make_node("MatMul", ["a", "wo"], ["y"], name="out")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, D]),
              helper.make_tensor_value_info("memory", TensorProto.FLOAT, ["N", 10, D])]
    if form == "key-input":
        inputs.append(helper.make_tensor_value_info("keys", TensorProto.FLOAT, ["N", 10, D]))
    graph = helper.make_graph(nodes, "cross_attention", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                                  ["N", 6, D])],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return normalize(helper.make_model(graph, opset_imports=opsets, ir_version=8))


def test_cross_attention_heads_are_units() -> None:
    """Keys and values from another sequence: heads never mix positions, so the rule is the same."""
    model = _cross_attention()
    analysis = analyze(model, {"x": (1, 6, D), "memory": (1, 10, D)}, measure_shapes=Executor(model).value_shapes)
    heads = analysis.group_of("q")
    assert heads.frozen is None and heads.channels == HEADS and heads.layers == ("q", "k", "v", "out")
    removed = apply_channel_masks(model, analysis, {heads.id: [0, 3]})
    onnx.checker.check_model(removed.proto, full_check=True)
    assert _num_heads(removed) == {"cross": 2} and removed.weight("wk").shape == (D, D // 2)
    space = _space(model, analysis)
    mask = torch.ones(space.num_units)
    start = space.offsets[space.groups.index(heads)]
    mask[[start + 1, start + 2]] = 0
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((3, 6, D)).astype(np.float32),
             "memory": rng.standard_normal((3, 10, D)).astype(np.float32)}
    executed, masked, _ = _masked(model, space, mask, feeds)
    assert relative_difference(masked, run_model(make_session(removed), feeds)) < TOLERANCE_FLOOR
    assert relative_difference(masked, executed) < 1e-5


@pytest.mark.parametrize(("form", "why"), [
    ("key-input", "reads key 'keys', whose channels the analysis cannot trace, so its heads cannot lose them"),
    ("attention-bias", "has attention bias or key/value cache inputs or outputs ['scores_bias'], so its heads cannot "
                       "be traced"),
    ("no-value", "has no value input (packed into another), so its heads cannot be traced"),
])
def test_attention_forms_the_rule_cannot_follow_freeze_by_name(form: str, why: str) -> None:
    model = _cross_attention(form)
    analysis = analyze(model, {spec.name: (1, 6 if spec.name == "x" else 10, D) for spec in model.inputs},
                       measure=False)  # without the executor, which refuses the last two forms
    assert analysis.group_of("q").frozen == f"node 'cross' (MultiHeadAttention) {why}"


@pytest.mark.parametrize("form", list(FORMS))
def test_the_residual_stream_a_skip_layernorm_writes_is_distilled(form: str) -> None:
    """Without residual Adds, the stages meet in SkipLayerNormalization: its stream (the sum where the graph reads it,
    else the normalised output) is a feature point, its channels on the last axis."""
    model = contrib_transformer(pre_norm=FORMS[form])
    points = feature_points(model, [], limit=8)
    stream = ("res1", "res2", "res1", "ln2") if FORMS[form] else ("ln1", "ln2", "ln1", "ln2")
    assert points == ["embedded", *(f"blocks.{i // 2}/{name}" for i, name in enumerate(stream))]
    assert set(feature_axes(model, points).values()) == {-1}
