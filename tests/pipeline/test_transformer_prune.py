"""Transformers through the whole prune: decomposed LayerNorm, the rewrite check, attention heads."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR
from smart_onnx.executor import Executor
from smart_onnx.model import save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.transformers import decoder, encoder, moments_layernorm_model, token_batch

FAST = SearchConfig(steps=6, finetune_steps=3, batch_size=8)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / np.max(np.abs(b)))


def test_a_model_whose_executor_and_onnxruntime_differ_past_1e4_is_still_written(tmp_path) -> None:
    model = moments_layernorm_model()
    x = np.random.default_rng(1).uniform(0, 2, (48, 12, 16)).astype(np.float32)
    with torch.no_grad():
        executed = Executor(model)({"x": torch.from_numpy(x[:8])})["y"].numpy()
    dense_error = _relative(executed, run_model(make_session(model), {"x": x[:8]})["y"])
    assert dense_error > 1e-4  # the float sensitivity the check must not blame on the rewrite
    calib, hold = dataset_from_arrays({"x": x}, model.inputs).split(0.25, seed=0)
    # No training: the weights keep the dense model's ill-conditioning (trained ones may lose it or not).
    search = SearchConfig(sparsity=0.1, steps=0, finetune_steps=0, refit=False, batch_size=8)
    out = prune(model, calib, hold, PruneOptions(mode="block", block=(8, 8), search=search, latency=False))
    check = out.report.export_check
    assert check.executor_error > 1e-4  # a fixed 1e-4 against the executor would have refused this model
    assert check.error <= check.tolerance
    assert check.tolerance >= TOLERANCE_FLOOR
    assert out.report.sparsity.achieved_params >= 0.1 - 1e-9
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13


@pytest.mark.parametrize("opset", [14, 17], ids=["decomposed-layernorm", "fused-layernorm"])
def test_channel_mode_prunes_the_ffn_between_layernorms(opset: int) -> None:
    model = encoder(opset=opset)
    if opset == 14:
        assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
        assert {"ReduceMean", "Pow", "Sqrt"} <= {n.op_type for n in model.graph.node}
    ids = token_batch(48)
    calib, hold = dataset_from_arrays({"input_ids": ids}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(**{**FAST.__dict__, "sparsity": 0.2})
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    shrunk = {row.name for row in out.report.layers if row.shape_after != row.shape_before}
    assert any("ffn" in name for name in shrunk)
    assert out.report.export_check.error <= out.report.export_check.tolerance
    assert out.model.num_weights() < model.num_weights()


@pytest.mark.parametrize("opset", [14, 17], ids=["decomposed-layernorm", "fused-layernorm"])
@pytest.mark.parametrize("method", ["smart", "uniform"])
def test_channel_mode_removes_hidden_channels_of_a_classifier(opset: int, method: str, tmp_path) -> None:
    """The residual stream of an encoder whose output is a classifier's logits is a unit: its channels leave the
    embeddings, every LayerNorm and every sublayer, and the rewrite check (onnxruntime against itself, the masked
    LayerNorms taking their statistics over the kept channels) passes. ``uniform`` prunes every group, the hidden
    one certainly; SMART chooses."""
    model = encoder(opset=opset, classes=3)
    calib, hold = dataset_from_arrays({"input_ids": token_batch(48)}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(**{**FAST.__dict__, "sparsity": 0.5, "method": method})
    out = prune(model, calib, hold, PruneOptions(mode="channel", search=search, latency=False))
    check = out.report.export_check
    assert check.error <= check.tolerance and check.tolerance == TOLERANCE_FLOOR
    assert [g.layers for g in out.report.frozen_groups] == [["/classifier/Gemm"]]  # only the 3 logits
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13
    widths = {t.name: tuple(t.dims) for t in out.model.graph.initializer}
    if method == "uniform":
        assert widths["tokens.weight"][1] < 32 and widths["classifier.weight"][1] == widths["tokens.weight"][1]
    assert out.report.sparsity.achieved_params >= 0.5 - 1e-9


MODELS = {
    "encoder-decomposed-layernorm": lambda: encoder(opset=14),
    "encoder-fused-layernorm": lambda: encoder(opset=17),
    "encoder-fused-qkv": lambda: encoder(opset=17, fused_qkv=True),
    "causal-decoder": lambda: decoder(opset=14),
}


@pytest.mark.parametrize("mode", ["block", "channel", "nm"])
@pytest.mark.parametrize("name", list(MODELS))
def test_transformers_prune_in_every_mode(name: str, mode: str, tmp_path) -> None:
    model = MODELS[name]()
    calib, hold = dataset_from_arrays({"input_ids": token_batch(48)}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(**{**FAST.__dict__, "sparsity": None if mode == "nm" else 0.5})
    extra = {"block": (8, 8)} if mode == "block" else {}
    out = prune(model, calib, hold, PruneOptions(mode=mode, search=search, latency=False, **extra))
    check = out.report.export_check
    assert check.error <= check.tolerance  # onnxruntime: the rewritten model computes the masked one
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13
    if mode == "channel":
        rows = {row.name: row for row in out.report.layers}
        heads = [row for n, row in rows.items() if "/attn/" in n and "/out/" not in n]
        cut = [row for row in heads if row.shape_after[1] < row.shape_before[1]]
        assert cut, "no attention head was removed"
        assert all((row.shape_before[1] - row.shape_after[1]) % 8 == 0 for row in cut)  # whole heads
        out_proj = [row for n, row in rows.items() if "/attn/out/" in n]
        assert any(row.shape_after[0] < row.shape_before[0] for row in out_proj)
