"""DropStaleValueInfo keeps annotations shape inference agrees with and drops the rest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.rewrite.value_info import DropStaleValueInfo
from tests.rewrite import typed_model

F = onnx.TensorProto.FLOAT


def _model(*entries: onnx.ValueInfoProto):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="r")]
    model = typed_model(nodes, {"x": np.zeros((2, 4), np.float32)}, ["y"], {"W": np.ones((4, 3), np.float32)})
    model.graph.value_info.extend(entries)
    return model


@pytest.mark.parametrize(
    ("entry", "kept"),
    [
        (helper.make_tensor_value_info("h", F, [2, 3]), True),
        (helper.make_tensor_value_info("h", F, ["batch", 3]), True),  # symbolic dims say nothing wrong
        (helper.make_tensor_value_info("h", F, None), True),
        (helper.make_tensor_value_info("h", F, [2, 5]), False),  # stale width
        (helper.make_tensor_value_info("h", F, [2, 3, 1]), False),  # wrong rank
        (helper.make_tensor_value_info("h", onnx.TensorProto.DOUBLE, [2, 3]), False),
        (helper.make_tensor_value_info("W", F, [4, 5]), False),  # fixed dims nothing can confirm
    ],
)
def test_entry_kept_or_dropped(entry: onnx.ValueInfoProto, kept: bool) -> None:
    model = _model(entry)
    result = DropStaleValueInfo()(model)
    assert result.modified is not kept
    assert [v.name for v in result.model.graph.value_info] == ([entry.name] if kept else [])
    assert len(model.graph.value_info) == 1  # the input model is not edited


def test_no_value_info_is_a_no_op() -> None:
    model = _model()
    assert DropStaleValueInfo()(model).model is model
