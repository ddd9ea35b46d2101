"""Heads of onnxruntime's fused com.microsoft Attention (one packed Q/K/V weight, ``num_heads``) as channels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR, relative_difference
from smart_onnx.executor import Executor
from smart_onnx.graph import Role, analyze
from smart_onnx.model import save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.rewrite import apply_channel_masks, set_weights
from smart_onnx.search import SearchConfig
from smart_onnx.search.space import ChannelSpace
from tests.transformers import fused_attention_model

D, HEADS, S = 32, 4, 6


def _feeds(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((n, S), np.int32)
    mask[:, -2:] = rng.integers(0, 2, (n, 2))  # some padded keys
    return {"x": rng.standard_normal((n, S, D)).astype(np.float32), "mask": mask}


SIZES = {"equal-thirds": None, "qkv-hidden-sizes": (D, D, 2 * D)}


def _analysis(model):
    return analyze(model, {"x": (1, S, D), "mask": (1, S)}, measure_shapes=Executor(model).value_shapes)


@pytest.mark.parametrize("sizes", list(SIZES))
def test_the_heads_of_a_fused_attention_are_one_group(sizes: str) -> None:
    model = fused_attention_model(SIZES[sizes])
    analysis = _analysis(model)
    assert analysis.layer("attn").op_type == "Attention"
    heads = analysis.group_of("attn")
    v = (SIZES[sizes] or (D, D, D))[2]
    assert heads.frozen is None and heads.channels == HEADS and heads.layers == ("attn", "attn_out")
    weight = next(s for s in heads.slices if s.role is Role.PRODUCER_WEIGHT)
    # Head h owns its columns in each of the Q, K and V parts of the packed weight.
    assert weight.removed_positions([1]).tolist() == [*range(8, 16), *range(D + 8, D + 16),
                                                       *range(2 * D + v // HEADS, 2 * D + 2 * v // HEADS)]
    edits = {(e.attribute, e.position, e.old_value, e.delta([1])) for e in heads.edits}
    expected = {("num_heads", 0, HEADS, 1)}
    if SIZES[sizes]:
        expected |= {("qkv_hidden_sizes", 0, D, 8), ("qkv_hidden_sizes", 1, D, 8), ("qkv_hidden_sizes", 2, v, v // 4)}
    assert edits == expected


@pytest.mark.parametrize("sizes", list(SIZES))
def test_removing_fused_heads_matches_zeroing_them_in_onnxruntime(sizes: str) -> None:
    model = fused_attention_model(SIZES[sizes])
    analysis = _analysis(model)
    heads = analysis.group_of("attn")
    removed = apply_channel_masks(model, analysis, {heads.id: [0, 2]})  # heads 1 and 3 go
    onnx.checker.check_model(removed.proto, full_check=True)
    attn = next(n for n in removed.graph.node if n.name == "attn")
    attrs = {a.name: helper.get_attribute_value(a) for a in attn.attribute}
    q, k, v = SIZES[sizes] or (D, D, D)
    assert attrs["num_heads"] == 2 and attrs.get("qkv_hidden_sizes", [q // 2, k // 2, v // 2]) == [q // 2, k // 2,
                                                                                                   v // 2]
    assert removed.weight("w").shape == (D, (q + k + v) // 2) and removed.weight("wo").shape == (v // 2, D)

    space = ChannelSpace(analysis, analysis.groups, {t.name: tuple(t.dims) for t in model.graph.initializer})
    mask = torch.ones(space.num_units)
    start = space.offsets[space.groups.index(heads)]
    mask[[start + 1, start + 3]] = 0
    feeds = _feeds(5)
    executor = Executor(model)
    transforms = space.transforms(mask)
    with torch.no_grad():
        got = {n: t.numpy() for n, t in executor(feeds, transforms=transforms).items()}
        zeroed = {n: fn(executor.weights.get(n)).numpy() for n, fn in transforms.items() if isinstance(n, str)}
    masked = run_model(make_session(set_weights(model, zeroed, validate=False)), feeds)
    assert relative_difference(masked, run_model(make_session(removed), feeds)) < TOLERANCE_FLOOR
    assert relative_difference(masked, got) < 1e-5  # the executor's masked model is onnxruntime's


def test_channel_mode_prunes_fused_heads(tmp_path) -> None:
    model = fused_attention_model()
    data = _feeds(48, seed=1)
    calib, hold = dataset_from_arrays(data, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.4, steps=4, finetune_steps=2, batch_size=8, method="uniform")
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    check = out.report.export_check
    assert check.error <= check.tolerance
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    attn = next(n for n in out.model.graph.node if n.name == "attn")
    heads = next(helper.get_attribute_value(a) for a in attn.attribute if a.name == "num_heads")
    assert heads < HEADS and out.model.weight("w").shape == (D, 3 * heads * D // HEADS)
