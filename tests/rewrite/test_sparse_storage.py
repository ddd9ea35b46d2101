"""StoreSparse: dense by default; COO as Constant nodes that pass the full checker; exposed tensors stay dense."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.model import iter_graphs, normalize
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


def _coo_constants(model) -> list[str]:
    return [n.output[0] for g in iter_graphs(model.graph) for n in g.node
            if n.op_type == "Constant" and n.attribute[0].name == "sparse_value"]


@pytest.mark.parametrize(("fmt", "expect_coo"), [("coo", True), ("dense", False)])
def test_formats(fmt: str, expect_coo: bool) -> None:
    model, _ = _matmul(0.1)
    out = StoreSparse(["W"], fmt)(model).model
    assert _coo_constants(out) == (["W"] if expect_coo else [])
    assert not out.graph.sparse_initializer  # never: the full checker rejects it feeding a standard op
    assert ("W" in {t.name for t in out.graph.initializer}) != expect_coo


@pytest.mark.parametrize(("dtype", "zeros"), [(np.float32, 0.8), (np.float16, 0.9)])
def test_coo_constant_is_smaller_at_high_sparsity_and_passes_the_full_checker(dtype, zeros: float) -> None:
    model, w = _matmul(zeros, dtype)
    out = StoreSparse(["W"], "coo")(model).model
    assert out.proto.ByteSize() < model.proto.ByteSize()
    onnx.checker.check_model(out.proto, full_check=True)
    validate(out)
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 32)).astype(dtype)}
    np.testing.assert_allclose(run_ort(out.proto, feeds)[0], feeds["x"] @ w, rtol=1e-2, atol=1e-2)


def test_a_sparse_initializer_fails_validation() -> None:
    model, w = _matmul(0.9)
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    del proto.graph.initializer[:]
    proto.graph.sparse_initializer.append(to_coo(onnx.numpy_helper.from_array(w, "W")))
    with pytest.raises(RewriteError, match="full ONNX checker"):
        validate(proto)


def test_coo_below_opset_11_is_refused() -> None:
    model, _ = _matmul(0.9)
    model.proto.opset_import[0].version = 10
    with pytest.raises(ConstraintError, match="opset 11.*Store the weights dense"):
        StoreSparse(["W"], "coo")(model)
    assert not StoreSparse(["W"], "dense")(model).modified


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
