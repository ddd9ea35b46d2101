"""Output roles inferred from the graph (producer op, rank, name), overrides, and where labels go."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from smart_onnx.errors import ConstraintError, DataError
from smart_onnx.graph import OutputRole, infer_output_roles, label_output, parse_role_overrides
from smart_onnx.model import normalize


def _model(nodes, outputs, inputs=(("x", ["N", 8]),), opset=17, initializers=()):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers),
    )
    return normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8))


def _roles(model):
    return {o.name: o for o in infer_output_roles(model)}


def test_logits_softmax_and_named_boxes() -> None:
    m = _model(
        [helper.make_node("Identity", ["x"], ["logits"]), helper.make_node("Softmax", ["x"], ["probs"], axis=1),
         helper.make_node("Identity", ["x"], ["bbox_pred"])],
        [("logits", TensorProto.FLOAT, ["N", 8]), ("probs", TensorProto.FLOAT, ["N", 8]),
         ("bbox_pred", TensorProto.FLOAT, ["N", 8])],
    )
    r = _roles(m)
    assert r["probs"].role is OutputRole.CLASS and r["probs"].scores == "probs" and r["probs"].class_axis == 1
    assert r["bbox_pred"].role is OutputRole.REGRESSION and "bbox" in r["bbox_pred"].reason
    # [N, 8] without softmax beside a softmax classifier: not class scores.
    assert r["logits"].role is OutputRole.REGRESSION and "probs" in r["logits"].reason


def test_plain_logits_are_class_and_n_by_1_is_regression() -> None:
    m = _model([helper.make_node("Identity", ["x"], ["y"]), helper.make_node("ReduceSum", ["x"], ["s"], keepdims=1,
                                                                               axes=[1])],
               [("y", TensorProto.FLOAT, ["N", 8]), ("s", TensorProto.FLOAT, ["N", 1])], opset=12)
    r = _roles(m)
    assert r["y"].role is OutputRole.CLASS and r["y"].scores == "logits"
    assert r["s"].role is OutputRole.REGRESSION


def test_neutral_names_three_heads_with_softmax_classifier() -> None:
    """out0 = softmax scores, out1 [N,4] and out2 [N,10] from Gemm-like ops: only out0 is class."""
    m = _model(
        [helper.make_node("Softmax", ["x"], ["out0"], axis=-1),
         helper.make_node("Slice", ["x", "s", "e", "a"], ["out1"]), helper.make_node("Identity", ["x"], ["out2"])],
        [("out0", TensorProto.FLOAT, ["N", 8]), ("out1", TensorProto.FLOAT, ["N", 4]),
         ("out2", TensorProto.FLOAT, ["N", 8])],
        initializers=[helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s", 0), ("e", 4), ("a", 1))],
    )
    r = _roles(m)
    assert [r[n].role for n in ("out0", "out1", "out2")] == [OutputRole.CLASS, OutputRole.REGRESSION,
                                                            OutputRole.REGRESSION]


def test_sequence_from_log_softmax_batch_and_time_major() -> None:
    nodes = [helper.make_node("LogSoftmax", ["x"], ["ls"], axis=2), helper.make_node("Identity", ["ls"], ["ctc"]),
             helper.make_node("Transpose", ["ls"], ["tm"], perm=[1, 0, 2])]
    m = _model(nodes, [("ctc", TensorProto.FLOAT, ["N", "T", 30]), ("tm", TensorProto.FLOAT, ["T", "N", 30])],
               inputs=(("x", ["N", "T", 30]),))
    r = _roles(m)
    assert r["ctc"].role is OutputRole.SEQUENCE and r["ctc"].batch_axis == 0 and r["ctc"].scores == "log_probs"
    assert r["tm"].role is OutputRole.SEQUENCE and r["tm"].batch_axis == 1 and r["tm"].class_axis == 2


def test_transpose_moves_the_softmax_axis() -> None:
    """Softmax over axis 1 of [N, C, T], transposed to [N, T, C]: classes on the last axis -> sequence."""
    nodes = [helper.make_node("Softmax", ["x"], ["p"], axis=1), helper.make_node("Transpose", ["p"], ["y"],
                                                                                  perm=[0, 2, 1])]
    m = _model(nodes, [("y", TensorProto.FLOAT, ["N", 5, 30])], inputs=(("x", ["N", 30, 5]),))
    assert _roles(m)["y"].role is OutputRole.SEQUENCE


def test_hidden_states_maps_and_integers() -> None:
    nodes = [helper.make_node("Identity", ["x"], ["last_hidden_state"]), helper.make_node("Identity", ["x"], ["y3"]),
             helper.make_node("ArgMax", ["x"], ["idx"], axis=2)]
    m = _model(nodes, [("last_hidden_state", TensorProto.FLOAT, ["N", 16, 8]), ("y3", TensorProto.FLOAT, ["N", 16, 8]),
                       ("idx", TensorProto.INT64, ["N", 16, 1])], inputs=(("x", ["N", 16, 8]),))
    r = _roles(m)
    assert r["last_hidden_state"].role is OutputRole.REGRESSION
    assert r["y3"].role is OutputRole.REGRESSION  # rank 3 without softmax or a scores name
    assert r["idx"].role is OutputRole.IGNORE


def test_rank_unknown_is_read_from_shape_inference() -> None:
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["p"], axis=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_empty_tensor_value_info("p")])
    m = normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    (info,) = infer_output_roles(m)
    assert info.role is OutputRole.CLASS and info.rank == 2


def test_overrides() -> None:
    m = _model([helper.make_node("Identity", ["x"], ["y"])], [("y", TensorProto.FLOAT, ["N", 8])])
    (info,) = infer_output_roles(m, {"y": "regression"})
    assert info.role is OutputRole.REGRESSION and info.reason == "--output-role"
    with pytest.raises(ConstraintError, match="no output 'z'"):
        infer_output_roles(m, {"z": "class"})
    with pytest.raises(ConstraintError, match="unknown role"):
        infer_output_roles(m, {"y": "boxes"})
    with pytest.raises(ConstraintError, match="sequence output"):
        infer_output_roles(m, {"y": "sequence"})
    assert parse_role_overrides(["a=class", "b:0=ignore", "a=regression"]) == {"a": "regression", "b:0": "ignore"}
    with pytest.raises(ConstraintError, match="NAME=ROLE"):
        parse_role_overrides(["boxes"])


def test_label_output_choice() -> None:
    m = _model([helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Identity", ["x"], ["b"])],
               [("a", TensorProto.FLOAT, ["N", 8]), ("b", TensorProto.FLOAT, ["N", 8])])
    outs = infer_output_roles(m)
    with pytest.raises(DataError, match=r"2 class outputs \['a', 'b'\]"):
        label_output(outs, None, have_labels=True)
    assert label_output(outs, None, have_labels=False) is None
    assert label_output(outs, "b", have_labels=True) == "b"
    with pytest.raises(DataError, match="not a class output"):
        label_output(infer_output_roles(m, {"b": "regression"}), "b", have_labels=True)
    single = infer_output_roles(m, {"b": "regression"})
    assert label_output(single, None, have_labels=True) == "a"
    assert np.all([o.to_dict()["role"] in {"class", "regression"} for o in single])


def test_pooled_embeddings_are_regression_not_class() -> None:
    """A sentence embedding [N, D] made by mean pooling (Div) or a pooler's Tanh: its argmax means nothing."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
             helper.make_node("Div", ["m", "two"], ["sentence"]), helper.make_node("Tanh", ["m"], ["pooled"]),
             helper.make_node("MatMul", ["m", "w"], ["logits"])]
    m = _model(nodes, [("sentence", TensorProto.FLOAT, ["N", 8]), ("pooled", TensorProto.FLOAT, ["N", 8]),
                       ("logits", TensorProto.FLOAT, ["N", 3])], inputs=(("x", ["N", 5, 8]),), opset=13,
               initializers=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                             helper.make_tensor("w", TensorProto.FLOAT, [8, 3], [0.1] * 24)])
    r = _roles(m)
    assert r["sentence"].role is OutputRole.REGRESSION and "Div" in r["sentence"].reason
    assert r["pooled"].role is OutputRole.REGRESSION and "Tanh" in r["pooled"].reason
    assert r["logits"].role is OutputRole.CLASS
