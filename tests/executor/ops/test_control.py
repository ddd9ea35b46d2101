"""If and Loop against onnxruntime, and the error for an op nobody handles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from smart_onnx.errors import GraphError, UnsupportedOpError
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tests.executor.ops.onenode import one_node
from tests.helpers import assert_matches_ort, make_model

F = TensorProto.FLOAT
X = np.array([1.0, -2.0, 3.0], np.float32)
W = np.array([0.5, 0.25, -1.0], np.float32)


def _out(name: str, elem: int = F):
    return helper.make_tensor_value_info(name, elem, None)


def _if_model(cond: np.ndarray | None, opset: int):
    """h = x + w; If(cond): then h * 2 (a branch initializer), else h - x; both read outer-scope values."""
    then = helper.make_graph(
        [helper.make_node("Mul", ["h", "two"], ["t"])], "then", [], [_out("t")],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )  # fmt: skip
    other = helper.make_graph([helper.make_node("Sub", ["h", "x"], ["e"])], "else", [], [_out("e")])
    nodes = [
        helper.make_node("Add", ["x", "w"], ["h"], name="add"),
        helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other),
    ]
    inits = {"w": W} | ({"c": cond} if cond is not None else {})
    return make_model(nodes, {"x": X}, ["y"], inits, opset)


@pytest.mark.parametrize("cond", [True, False])
@pytest.mark.parametrize("opset", [11, 13, 17, 20, 21, 25])
def test_if_with_constant_condition_reads_outer_scope(cond, opset):
    assert_matches_ort(_if_model(np.array(cond), opset), {"x": X})


@pytest.mark.parametrize("cond", [True, False])
def test_if_with_runtime_condition(cond):
    model = _if_model(None, 13)
    model.graph.input.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    feeds = {"x": X, "c": np.array(cond)}
    assert_matches_ort(model, feeds)


def test_if_branch_sees_transforms_and_passes_gradients():
    ex = Executor(normalize(_if_model(np.array(True), 13)))
    assert "w" in ex.parameter_names()
    masked = ex({"x": torch.from_numpy(X)}, transforms={"w": torch.zeros_like})["y"]
    assert torch.allclose(masked, torch.from_numpy(X) * 2)
    ex({"x": torch.from_numpy(X)})["y"].sum().backward()
    assert torch.equal(ex.weights.get("w").grad, torch.full((3,), 2.0))


def _accumulate_body():
    """(i, cond, acc) -> (cond, acc + x + i, acc + x + i) with x from the outer scope."""
    return helper.make_graph(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=F),
            helper.make_node("Add", ["acc", "x"], ["ax"]),
            helper.make_node("Add", ["ax", "fi"], ["acc_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Identity", ["acc_out"], ["scan"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc", F, [3]),
        ],
        [_out("cond_out", TensorProto.BOOL), _out("acc_out"), _out("scan")],
    )


@pytest.mark.parametrize("trips", [0, 1, 4])
@pytest.mark.parametrize("opset", [11, 13, 17, 21, 25])
def test_loop_accumulates_and_stacks_scan_outputs(trips, opset):
    node = helper.make_node("Loop", ["m", "", "acc0"], ["acc", "scans"], name="loop", body=_accumulate_body())
    model = make_model(node, {"x": X}, ["acc", "scans"] if trips else ["acc"], {"m": np.array(trips), "acc0": W}, opset)
    assert_matches_ort(model, {"x": X})


def test_loop_runs_while_its_condition_holds():
    """No trip count: c doubles until it reaches 100 (1 -> 128 after 7 iterations)."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["c", "two"], ["c_out"]),
            helper.make_node("Less", ["c_out", "hundred"], ["go"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("c", F, []),
        ],
        [_out("go", TensorProto.BOOL), _out("c_out")],
    )
    node = helper.make_node("Loop", ["", "start", "c0"], ["c"], name="loop", body=body)
    inits = {"start": np.array(True), "c0": np.array(1.0, np.float32), "two": np.array(2.0, np.float32),
             "hundred": np.array(100.0, np.float32)}  # fmt: skip
    model = make_model(node, {}, ["c"], inits, 13)
    assert_matches_ort(model, {})


def test_loop_with_both_bounds_stops_at_the_trip_count():
    node = helper.make_node("Loop", ["m", "go", "acc0"], ["acc", "scans"], name="loop", body=_accumulate_body())
    inits = {"m": np.array(3), "go": np.array(True), "acc0": W}
    assert_matches_ort(make_model(node, {"x": X}, ["acc", "scans"], inits, 13), {"x": X})


def test_loop_without_trip_count_or_condition_is_a_graph_error():
    node = helper.make_node("Loop", ["", "", "acc0"], ["acc", "scans"], name="endless", body=_accumulate_body())
    model = make_model(node, {"x": X}, ["acc", "scans"], {"acc0": W}, 13)
    with pytest.raises(GraphError, match="endless"):
        Executor(normalize(model))({"x": X})


def test_unknown_op_names_op_node_and_opset():
    model, _ = one_node("FancyOp", [X], opset=17)
    model.graph.node[0].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 3))
    with pytest.raises(UnsupportedOpError, match=r"FancyOp.*fancyop_node.*opset 3"):
        Executor(normalize(model))


def test_unregistered_standard_op_names_op_node_and_opset():
    model, _ = one_node("Det", [np.eye(3, dtype=np.float32)], opset=17)
    with pytest.raises(UnsupportedOpError, match=r"Det.*det_node.*opset 17"):
        Executor(normalize(model))


def test_transforms_apply_to_fed_graph_inputs():
    ex = Executor(normalize(_if_model(np.array(False), 13)))  # else branch: y = (x + w) - x
    seen = []
    y = ex({"x": torch.from_numpy(X)}, transforms={"x": lambda t: seen.append(t) or t * 0})["y"]
    assert len(seen) == 1 and torch.equal(seen[0], torch.from_numpy(X))
    assert torch.allclose(y, torch.from_numpy(W))
