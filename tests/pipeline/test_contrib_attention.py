"""Models with onnxruntime's fused com.microsoft ops (its transformer optimizer's output) run and prune around and
through them: heads of Attention and MultiHeadAttention, the hidden dimension through SkipLayerNormalization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR
from smart_onnx.executor import Executor
from smart_onnx.graph.tables import lookup_tables, token_inputs
from smart_onnx.model import normalize, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.transformers import contrib_transformer, embed_layernorm_model, encoder, fused_attention_model, token_batch

D, F, S = 32, 64, 6


@pytest.mark.parametrize(("mode", "extra"), [("block", {"block": (8, 8)}), ("channel", {})])
def test_a_model_with_fused_attention_is_pruned_around_it(mode: str, extra: dict, tmp_path) -> None:
    model = fused_attention_model(key_mask=False, width=D, seq=S, ffn=F)
    x = np.random.default_rng(1).standard_normal((48, S, D)).astype(np.float32)
    calib, hold = dataset_from_arrays({"x": x}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.3, steps=4, finetune_steps=2, batch_size=8)
    out = prune(model, calib, hold, PruneOptions(mode=mode, search=search, latency=False, **extra))
    check = out.report.export_check
    assert check.error <= check.tolerance  # onnxruntime runs the contrib op on both sides of the check
    # Within one unit of the request: a block, or in channel mode a head (its Q/K/V columns and projection rows).
    head = (3 * D * D + D * D) / 4 / (D * 3 * D + D * D + 2 * D * F + D * 8)
    assert 0.3 - 1e-9 <= out.report.sparsity.achieved_params <= 0.3 + (head if mode == "channel" else 0.02)
    if mode == "channel":  # heads and FFN channels; the residual stream (from the input x) stays frozen
        rows = {r.name: r for r in out.report.layers}
        assert rows["ffn1"].shape_after[1] < F or rows["attn"].shape_after[1] < 3 * D
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13


def _optimized_encoder(tmp_path) -> onnx.ModelProto:
    """The generated encoder through onnxruntime's own transformer optimizer: Attention, SkipLayerNormalization and
    BiasGelu (com.microsoft) replace the exported attention, residual LayerNorms and GELUs."""
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    path = save_model(encoder(opset=17), tmp_path / "encoder.onnx")
    optimized = optimizer.optimize_model(str(path), model_type="bert", num_heads=4, hidden_size=32, opt_level=0)
    optimized.save_model_to_file(str(tmp_path / "optimized.onnx"))  # adds the com.microsoft opset import
    return onnx.load(str(tmp_path / "optimized.onnx"))


@pytest.mark.parametrize(("mode", "extra"), [("block", {"block": (8, 8)}), ("channel", {})])
def test_onnxruntimes_optimized_encoder_runs_in_the_executor_and_prunes(mode: str, extra: dict, tmp_path) -> None:
    proto = _optimized_encoder(tmp_path)
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= {n.op_type for n in proto.graph.node
                                                                   if n.domain == "com.microsoft"}
    model = normalize(proto)
    ids = token_batch(48)
    name = model.inputs[0].name
    with torch.no_grad():
        executed = Executor(model)({name: torch.from_numpy(ids[:8])})
    expected = run_model(make_session(model), {name: ids[:8]})
    for key, value in expected.items():
        assert np.max(np.abs(executed[key].numpy() - value)) <= 1e-5 * np.max(np.abs(value))
    calib, hold = dataset_from_arrays({name: ids}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.2, steps=4, finetune_steps=2, batch_size=8)
    out = prune(model, calib, hold, PruneOptions(mode=mode, search=search, latency=False, **extra))
    assert out.report.export_check.error <= out.report.export_check.tolerance
    assert 0.2 - 1e-9 <= out.report.sparsity.achieved_params <= 0.2 + 0.02  # of all prunable weights
    if mode == "channel":  # FFN channels through BiasGelu and the fused Attention's heads; the stream is frozen
        shrunk = {r.name for r in out.report.layers if r.shape_after != r.shape_before}
        assert shrunk and all("ffn" in name or "attn/out" in name or r"Attention" in name for name in shrunk)
        assert out.report.sparsity.searched is None  # every layer holds units: the Attention's are its heads
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13


def _embed_feeds(n: int, segments: bool, seed: int = 1) -> dict[str, np.ndarray]:
    ids = token_batch(n, seed=seed)
    mask = np.ones_like(ids)
    mask[:, -3:] = np.random.default_rng(seed).integers(0, 2, (n, 3))  # some padded keys
    feeds = {"input_ids": ids, "attention_mask": mask}
    if segments:
        feeds["token_type_ids"] = np.repeat((np.arange(ids.shape[1])[None] >= 4).astype(np.int64), n, axis=0)
    return feeds


@pytest.mark.parametrize("segments", [True, False], ids=["segments", "no-segments"])
def test_embed_layernorm_runs_as_onnxruntime_runs_it_and_its_tables_are_lookups(segments: bool) -> None:
    model = embed_layernorm_model(segments=segments)
    feeds = _embed_feeds(6, segments)
    with torch.no_grad():
        executed = Executor(model)({k: torch.from_numpy(v) for k, v in feeds.items()})
    expected = run_model(make_session(model), feeds)
    for key, value in expected.items():  # the head reads the mask index through Attention: padding included
        assert np.max(np.abs(executed[key].numpy() - value)) <= 1e-5 * np.max(np.abs(value)), key
    # The ids reach the tables through a Cast to int32: still token ids, and the tables are not trained.
    assert token_inputs(model) == {"input_ids": 50, **({"token_type_ids": 2} if segments else {})}
    assert lookup_tables(model) == {"word", "pos", *(["seg"] if segments else [])}


def test_a_model_with_fused_embeddings_prunes_its_heads_and_ffn(tmp_path) -> None:
    model = embed_layernorm_model()
    data = dataset_from_arrays(_embed_feeds(48, True), model.inputs)
    calib, hold = data.split(0.25, seed=0)
    search = SearchConfig(sparsity=0.3, steps=6, finetune_steps=2, batch_size=8, method="uniform")
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    assert out.report.export_check.error <= out.report.export_check.tolerance
    shrunk = {r.name for r in out.report.layers if r.shape_after != r.shape_before}
    # Heads (the fused Attention's packed columns, the projection's rows) and FFN channels; the stream, a graph
    # output, stays whole.
    assert {"attn", "ffn1"} <= shrunk <= {"attn", "attn_out", "ffn1", "ffn2"}
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    run_model(make_session(out.model), _embed_feeds(4, True, seed=3))


@pytest.mark.parametrize("method", ["uniform", "smart"])
def test_the_hidden_width_is_pruned_out_of_fused_embeddings(method: str, tmp_path) -> None:
    """Where no output carries the stream, its channels start at EmbedLayerNormalization: the word, position and
    segment tables lose columns with gamma, beta and every layer reading the stream, and the LayerNorm of the
    masked model takes its statistics over the kept channels as the pruned one does (the executor's masked model
    agrees with onnxruntime's to float rounding, not to the 1e-1 that int weights gave)."""
    model = embed_layernorm_model(sum_output=False)
    calib, hold = dataset_from_arrays(_embed_feeds(48, True), model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.4, steps=6, finetune_steps=2, batch_size=8, method=method)
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    check = out.report.export_check
    assert check.error <= check.tolerance and check.executor_error < 1e-5
    dims = {t.name: tuple(t.dims) for t in out.model.graph.initializer}
    width = dims["g0"][0]
    assert width < 32 and dims["word"] == (50, width) and dims["pos"] == (8, width) and dims["seg"] == (2, width)
    assert dims["b0"] == dims["g1"] == (width,) and dims["wy"] == (width, 8)
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    run_model(make_session(out.model), _embed_feeds(4, True, seed=3))


@pytest.mark.parametrize(("pre_norm", "mode", "method"), [
    (False, "channel", "uniform"), (False, "channel", "smart"), (False, "block", "smart"),
    (True, "channel", "uniform"), (True, "block", "smart"),
], ids=lambda v: {False: "post-ln-encoder", True: "pre-ln-decoder-tied-head"}.get(v, v) if isinstance(v, bool) else v)
def test_multihead_attention_and_skip_layernorm_models_prune_through_them(pre_norm: bool, mode: str, method: str,
                                                                          tmp_path) -> None:
    """In channel mode heads (MultiHeadAttention's ``num_heads`` rewritten), the hidden dimension (through every
    SkipLayerNormalization, the embeddings and, in the decoder, the tied LM head) and the FFNs are units; ``uniform``
    cuts every group, SMART chooses. The rewritten model runs in onnxruntime and computes the masked one."""
    model = contrib_transformer(pre_norm=pre_norm)
    data = {"input_ids": token_batch(48)}
    if not pre_norm:
        mask = np.ones((48, 8), np.int32)
        mask[:, -2:] = np.random.default_rng(3).integers(0, 2, (48, 2))
        data["attention_mask"] = mask
    calib, hold = dataset_from_arrays(data, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.5, steps=6, finetune_steps=3, batch_size=8, method=method)
    extra = {"block": (8, 8)} if mode == "block" else {}
    out = prune(model, calib, hold, PruneOptions(mode=mode, search=search, latency=False, **extra))
    check = out.report.export_check
    # onnxruntime: rewritten against masked; the executor against onnxruntime on the masked model.
    assert check.error <= check.tolerance == TOLERANCE_FLOOR and check.executor_error <= TOLERANCE_FLOOR
    assert [g.layers for g in out.report.frozen_groups] == [["lm_head"] if pre_norm else ["classifier"]]
    assert out.report.sparsity.achieved_params >= 0.5 - 1e-9
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13
    got = run_model(make_session(out.model), {k: v[:4] for k, v in data.items()})
    assert got["logits"].shape == ((4, 8, 50) if pre_norm else (4, 3))
    heads = {n.name: helper.get_attribute_value(a) for n in out.model.graph.node for a in n.attribute
             if a.name == "num_heads"}
    widths = {t.name: tuple(t.dims) for t in out.model.graph.initializer}
    if mode == "block":
        assert set(heads.values()) == {4} and widths == {t.name: tuple(t.dims) for t in model.graph.initializer}
        return
    hidden = widths["tokens.weight"][1]
    for i in range(2):
        assert widths[f"blocks.{i}/qkv.b"] == (3 * 8 * heads[f"blocks.{i}/attn/mha"],)  # whole heads
        assert widths[f"blocks.{i}/ln1.g"] == widths[f"blocks.{i}/o.b"] == widths[f"blocks.{i}/ffn2.b"] == (hidden,)
    if method == "uniform":
        assert hidden < 32 and all(h < 4 for h in heads.values())
        assert all(widths[f"blocks.{i}/ffn1"][1] < 64 for i in range(2))


@pytest.mark.realmodels
@pytest.mark.slow
def test_onnxruntimes_optimized_minilm_loses_heads_and_ffn_channels(realmodels, tmp_path) -> None:
    """The real MiniLM through onnxruntime's transformer optimizer (EmbedLayerNormalization, packed Attention,
    SkipLayerNormalization, BiasGelu) in channel mode: heads leave the packed weights with ``num_heads`` rewritten,
    FFN channels leave through BiasGelu, and onnxruntime runs the written file."""
    real = realmodels("paraphrase-minilm-ort-fused")
    model = normalize(onnx.load(str(real.path)))
    calib, hold = dataset_from_arrays(real.feeds(40, seed=0), model.inputs).split(0.2, seed=0)
    search = SearchConfig(sparsity=0.3, steps=4, finetune_steps=2, batch_size=8, method="uniform", refit=False)
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    assert out.report.export_check.error <= out.report.export_check.tolerance
    heads = [helper.get_attribute_value(a) for n in out.model.graph.node if n.op_type == "Attention"
             for a in n.attribute if a.name == "num_heads"]
    assert len(heads) == 3 and sum(heads) < 36
    assert 0.3 - 1e-9 <= out.report.sparsity.achieved_params <= 0.32
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    run_model(make_session(out.model), real.feeds(2, seed=5))
