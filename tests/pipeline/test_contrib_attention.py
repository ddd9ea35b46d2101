"""Models with onnxruntime's fused com.microsoft ops (its transformer optimizer's output) run and prune around them."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.executor import Executor
from smart_onnx.model import normalize, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.transformers import encoder, token_batch

D, F, S = 32, 64, 6


def _fused_encoder_block() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def f(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * shape[0] ** -0.5).astype(np.float32)

    inits = {"w": f(D, 3 * D), "b": np.zeros(3 * D, np.float32), "w1": f(D, F), "w2": f(F, D), "wo": f(D, 8)}
    nodes = [
        helper.make_node("Attention", ["x", "w", "b"], ["a"], domain="com.microsoft", num_heads=4, name="attn"),
        helper.make_node("Add", ["x", "a"], ["r"]),
        helper.make_node("MatMul", ["r", "w1"], ["h"], name="ffn1"),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["f"], name="ffn2"),
        helper.make_node("Add", ["r", "f"], ["r2"]),
        helper.make_node("MatMul", ["r2", "wo"], ["y"], name="head"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", S, D])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", S, 8])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("mode", "extra"), [("block", {"block": (8, 8)}), ("channel", {})])
def test_a_model_with_fused_attention_is_pruned_around_it(mode: str, extra: dict, tmp_path) -> None:
    model = normalize(_fused_encoder_block())
    x = np.random.default_rng(1).standard_normal((48, S, D)).astype(np.float32)
    calib, hold = dataset_from_arrays({"x": x}, model.inputs).split(0.25, seed=0)
    search = SearchConfig(sparsity=0.3, steps=4, finetune_steps=2, batch_size=8)
    out = prune(model, calib, hold, PruneOptions(mode=mode, search=search, latency=False, **extra))
    check = out.report.export_check
    assert check.error <= check.tolerance  # onnxruntime runs the contrib op on both sides of the check
    assert 0.3 - 1e-9 <= out.report.sparsity.achieved_params <= 0.3 + 0.02
    if mode == "channel":  # the FFN's channels; the head's input (the residual stream) stays frozen
        assert dict((r.name, r.shape_after) for r in out.report.layers)["ffn1"][1] < F
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
    if mode == "channel":  # FFN channels through BiasGelu; the attention output projections sit in frozen groups
        shrunk = {r.name for r in out.report.layers if r.shape_after != r.shape_before}
        assert shrunk and all("ffn" in name for name in shrunk)
        assert out.report.sparsity.searched > out.report.sparsity.achieved_params
    path = save_model(out.model, tmp_path / "pruned.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    assert onnx.load(str(path)).ir_version <= 13
