"""tensor_runner: the model in onnxruntime, returning inner tensors beside its outputs (the search's teacher)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from smart_onnx.eval.ort import tensor_runner
from smart_onnx.model import normalize


def _two_steps() -> onnx.ModelProto:
    """y = relu(x @ w) + 1, with the product ``h`` inside."""
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Add", ["r", "one"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              [onnx.numpy_helper.from_array(w, "w"),
                               onnx.numpy_helper.from_array(np.ones(3, np.float32), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_inner_tensors_come_back_beside_the_outputs_and_the_model_is_not_changed() -> None:
    model = normalize(_two_steps())
    before = model.proto.SerializeToString()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    values = tensor_runner(model, ["h", "y", "h"])({"x": x})  # an output asked for, and a name twice: each once
    w = onnx.numpy_helper.to_array(model.proto.graph.initializer[0])
    assert sorted(values) == ["h", "y"]
    np.testing.assert_allclose(values["h"], x @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values["y"], np.maximum(x @ w, 0) + 1, rtol=1e-5, atol=1e-6)
    assert model.proto.SerializeToString() == before
    assert sorted(tensor_runner(model)({"x": x})) == ["y"]
