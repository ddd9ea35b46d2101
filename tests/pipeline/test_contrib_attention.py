"""Models with onnxruntime's fused com.microsoft ops (its transformer optimizer's output) run and prune around them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.executor import Executor
from smart_onnx.model import normalize, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.transformers import encoder, fused_attention_model, token_batch

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
