"""Pass contract: requires/ensures hooks, Sequential history in errors, Validate."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.model import OnnxModel
from smart_onnx.rewrite.passes import Pass, PassResult, Sequential, Validate, run_passes, validate
from tests.rewrite import typed_model


def _model() -> OnnxModel:
    return typed_model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        {"x": np.zeros((2, 4), np.float32)},
        ["y"],
        {"W": np.ones((4, 3), np.float32)},
    )


class _Noop(Pass):
    def call(self, model: OnnxModel) -> PassResult:
        return PassResult(model, False)


class _BreakWeight(Pass):
    """Gives W a shape MatMul cannot take."""

    def call(self, model: OnnxModel) -> PassResult:
        out = model.copy()
        out.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((5, 3), np.float32), "W"))
        return PassResult(out, True)


class _Refuse(Pass):
    def requires(self, model: OnnxModel) -> None:
        raise ConstraintError("keep-set for group 3 is empty")

    def call(self, model: OnnxModel) -> PassResult:
        raise AssertionError("call must not run when requires() fails")


def test_sequential_reports_modified_and_order() -> None:
    model = _model()
    result = Sequential(_Noop(), _Noop())(model)
    assert result.model is model and result.modified is False
    assert Sequential(_Noop(), _BreakWeight()).call(model).modified is True


def test_failure_names_the_passes_that_ran_and_keeps_the_class() -> None:
    with pytest.raises(ConstraintError, match=r"in rewrite pass _Refuse \(after _Noop, _Noop\)"):
        Sequential(_Noop(), _Noop(), _Refuse())(_model())


def test_validate_rejects_a_broken_rewrite() -> None:
    with pytest.raises(RewriteError, match=r"the rewritten model fails .*Validate \(after _BreakWeight\)"):
        run_passes(_model(), _BreakWeight())


def test_validate_blames_an_already_invalid_input() -> None:
    bad = _BreakWeight()(_model()).model
    with pytest.raises(RewriteError, match="the model given to the rewriter fails"):
        run_passes(bad, _Noop())


def test_validate_passes_a_good_model_and_changes_nothing() -> None:
    model = _model()
    result = Validate()(model)
    assert result.model is model and not result.modified
    validate(model.proto)


def test_validate_checks_strict_shape_inference() -> None:
    proto = _model().proto
    # Declaring a wrong output shape passes the structural checker but not strict inference.
    proto.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 7]))
    with pytest.raises(RewriteError, match="fails"):
        validate(proto)


def _large_model() -> OnnxModel:
    return typed_model([helper.make_node("MatMul", ["x", "W"], ["y"])], {"x": np.zeros((2, 64), np.float32)}, ["y"],
                       {"W": np.arange(64 * 32, dtype=np.float32).reshape(64, 32)})


def test_large_models_are_checked_from_a_file_and_left_as_they_were(monkeypatch) -> None:
    """Above the in-memory limit the checkers read the graph from a file and the weights from another (so they
    never hold the weights); the caller's message keeps its weights (onnx.save_model with external data would
    have moved them into the deleted temporary file)."""
    import smart_onnx.model as model_module

    monkeypatch.setattr(model_module, "_LARGE_BYTES", 0)
    model, broken, short = _large_model(), _BreakWeight()(_model()).model, _large_model()
    short.graph.initializer[0].raw_data = short.graph.initializer[0].raw_data[:-4]
    before = model.proto.SerializeToString()
    checked = []
    original = onnx.checker.check_model

    def check_model(subject, full_check=False):
        loaded = onnx.load(subject, load_external_data=False)
        checked.append(loaded.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL)
        return original(subject, full_check=full_check)

    monkeypatch.setattr(onnx.checker, "check_model", check_model)
    validate(model)
    assert checked == [True]  # a file, its weights in another
    assert model.proto.SerializeToString() == before
    with pytest.raises(RewriteError, match="fails"):
        validate(broken)
    with pytest.raises(RewriteError, match="'W' holds 8188 bytes of raw data, its shape and type need 8192"):
        validate(short)
