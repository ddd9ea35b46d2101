"""StoreSparse: COO only where smaller (or forced), exposed tensors stay dense, IR >= 6, loads back dense."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.model import normalize
from smart_onnx.rewrite.passes import validate
from smart_onnx.rewrite.sparse_storage import StoreSparse, to_coo
from tests.helpers import run_ort
from tests.rewrite import random_feeds, typed_model


def _matmul(zero_fraction: float, dtype=np.float32, ir_version: int | None = None):
    w = np.random.default_rng(0).standard_normal((32, 16)).astype(dtype)
    w.reshape(-1)[: round(zero_fraction * w.size)] = 0
    model = typed_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                        {"x": np.zeros((2, 32), dtype)}, ["y"], {"W": w})
    if ir_version is not None:
        model.proto.ir_version = ir_version
    return model, w


def test_to_coo_round_trips() -> None:
    _, w = _matmul(0.7)
    sparse = to_coo(onnx.numpy_helper.from_array(w, "W"))
    assert sparse.values.name == "W" and list(sparse.dims) == [32, 16]
    dense = np.zeros(w.size, w.dtype)
    dense[onnx.numpy_helper.to_array(sparse.indices)] = onnx.numpy_helper.to_array(sparse.values)
    np.testing.assert_array_equal(dense.reshape(w.shape), w)


@pytest.mark.parametrize(("dtype", "zeros", "expect_coo"), [
    (np.float32, 0.5, False), (np.float32, 0.8, True),
    # fp16 values are half the size, so the int64 indices pay off only later
    (np.float16, 0.7, False), (np.float16, 0.9, True),
])
def test_auto_compares_real_sizes(dtype, zeros: float, expect_coo: bool) -> None:
    model, _ = _matmul(zeros, dtype)
    result = StoreSparse(["W"], "auto")(model)
    assert result.modified == expect_coo
    assert len(result.model.graph.sparse_initializer) == int(expect_coo)
    if expect_coo:
        assert result.model.proto.ByteSize() < model.proto.ByteSize()


@pytest.mark.parametrize(("fmt", "expect_coo"), [("coo", True), ("dense", False)])
def test_forced_formats(fmt: str, expect_coo: bool) -> None:
    model, _ = _matmul(0.1)
    assert len(StoreSparse(["W"], fmt)(model).model.graph.sparse_initializer) == int(expect_coo)


def test_only_named_tensors_move() -> None:
    model, _ = _matmul(0.95)
    assert not StoreSparse(["other"], "coo")(model).modified


def test_tensor_that_is_a_graph_output_stays_dense() -> None:
    model, _ = _matmul(0.95)
    model.graph.output.append(helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [32, 16]))
    assert not StoreSparse(["W"], "coo")(model).modified


def test_old_ir_version_is_raised_to_6() -> None:
    model, w = _matmul(0.95, ir_version=5)
    out = StoreSparse(["W"], "coo")(model).model
    assert out.proto.ir_version == 6 and model.proto.ir_version == 5
    validate(out)
    feeds = random_feeds(model)
    np.testing.assert_allclose(run_ort(out.proto, feeds)[0], feeds["x"] @ w, rtol=1e-5, atol=1e-6)


def test_normalize_densifies_back() -> None:
    model, w = _matmul(0.9)
    out = StoreSparse(["W"], "coo")(model).model
    copy = onnx.ModelProto()
    copy.CopyFrom(out.proto)
    np.testing.assert_array_equal(normalize(copy).weight("W"), w)


def test_unknown_format_is_a_bug() -> None:
    with pytest.raises(ValueError, match="fmt"):
        StoreSparse(["W"], "csr")
