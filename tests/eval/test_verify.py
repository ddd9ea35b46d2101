"""The rewrite check: onnxruntime on the rewritten model against onnxruntime on the masked original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from smart_onnx.errors import RewriteError
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.eval.verify import TOLERANCE_FLOOR, check_rewrite, relative_difference
from smart_onnx.model import normalize

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
FEEDS = {"x": RNG.standard_normal((8, 4)).astype(np.float32)}


def _matmul(w: np.ndarray):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              [onnx.numpy_helper.from_array(w, "w")])
    return normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8))


def _ort(w: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's outputs of the (masked) model with weight ``w``: the reference the rewrite is judged against."""
    return run_model(make_session(_matmul(w)), FEEDS)


def _exact(w: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": (FEEDS["x"].astype(np.float64) @ w.astype(np.float64)).astype(np.float32)}


def test_the_same_model_passes_with_the_floor_as_tolerance() -> None:
    check = check_rewrite(_ort(W), _matmul(W.copy()), FEEDS, _exact(W))
    assert check.error == 0.0
    assert check.executor_error < 1e-6
    assert check.tolerance == TOLERANCE_FLOOR


def test_a_different_model_is_refused() -> None:
    with pytest.raises(RewriteError, match="nothing was written"):
        check_rewrite(_ort(W), _matmul(W * 1.01), FEEDS, _exact(W))


def test_the_tolerance_follows_the_models_float_sensitivity() -> None:
    # The executor's values differ from onnxruntime's by 1e-3 (relative): a rewrite 1e-3 off is rounding.
    noisy = {"y": _exact(W)["y"] * np.float32(1 + 1e-3)}
    check = check_rewrite(_ort(W), _matmul(W * np.float32(1 + 1e-3)), FEEDS, noisy)
    assert 5e-4 < check.error < 2e-3
    assert check.tolerance == pytest.approx(10 * check.executor_error)


def test_nan_in_the_rewritten_model_is_refused() -> None:
    bad = W.copy()
    bad[:, 1] = np.nan
    with pytest.raises(RewriteError):
        check_rewrite(_ort(W), _matmul(bad), FEEDS, _exact(W))


def test_relative_difference_ignores_integer_outputs_and_lets_nan_win() -> None:
    expected = {"a": np.array([1.0, 2.0], np.float32), "i": np.array([1, 2])}
    assert relative_difference(expected, {"a": np.array([1.0, 2.5], np.float32), "i": np.array([9, 9])}) == 0.25
    assert np.isnan(relative_difference(expected, {"a": np.array([np.nan, 2.0], np.float32), "i": np.array([1, 2])}))


@pytest.mark.parametrize("in_memory", [True, False])
def test_sessions_read_models_above_the_ir_version_onnxruntime_takes_without_copying_them(monkeypatch,
                                                                                        in_memory: bool) -> None:
    """A model of IR 14 (onnx 1.23's default; onnxruntime reads 13) runs: the IR version is overridden in the
    bytes given to onnxruntime, as bytes or (large models) through a file, and the caller's model keeps its own."""
    import smart_onnx.model as model_module

    if not in_memory:
        monkeypatch.setattr(model_module, "_LARGE_BYTES", 0)
    w = RNG.standard_normal((4, 300)).astype(np.float32)  # 4800 bytes: its data apart from the file's graph
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 300])],
                              [onnx.numpy_helper.from_array(w, "w")])
    model = normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=14))
    before = model.proto.SerializeToString()
    got = run_model(make_session(model), FEEDS)
    np.testing.assert_allclose(got["y"], FEEDS["x"] @ w, rtol=1e-5, atol=1e-5)
    assert model.proto.SerializeToString() == before  # IR 14 and its weights, as given
