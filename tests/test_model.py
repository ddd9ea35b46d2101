"""Loader/saver: what real exporters write is normalised, saving is atomic and ORT-loadable."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from smart_onnx.errors import GraphError, ModelLoadError
from smart_onnx.model import (
    SAVE_IR_VERSION,
    OnnxModel,
    load_model,
    normalize,
    normalized,
    resolve_input_shapes,
    save_model,
)
from tests.helpers import make_model, run_executor, run_ort


def _mul_add(opset: int = 17) -> onnx.ModelProto:
    x = np.ones((2, 3), np.float32)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.full((3,), 2.0, np.float32))),
        helper.make_node("Mul", ["x", "w"], ["y"]),
        helper.make_node("Add", ["y", "c"], ["z"]),
    ]
    return make_model(nodes, {"x": x}, ["z"], {"w": np.array([1, 2, 3], np.float32)}, opset=opset)


def test_constant_nodes_become_named_initializers() -> None:
    model = normalize(_mul_add())
    assert "c" in model.initializers and "c" in model.lifted_constants
    assert all(n.op_type != "Constant" for n in model.graph.node)


def test_sparse_initializers_are_densified() -> None:
    proto = _mul_add()
    dense = np.array([0, 5, 0], np.float32)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([5], np.float32), "w"), numpy_helper.from_array(np.array([1], np.int64)), [3]
    )
    del proto.graph.initializer[:]
    proto.graph.sparse_initializer.append(sparse)
    model = normalize(proto)
    np.testing.assert_array_equal(model.weight("w"), dense)
    assert not model.graph.sparse_initializer


def test_nodes_are_toposorted_and_named() -> None:
    proto = _mul_add()
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(nodes))
    model = normalize(proto)
    ops = [n.op_type for n in model.graph.node]
    assert ops.index("Mul") < ops.index("Add")
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)


def test_missing_producer_is_a_load_error() -> None:
    proto = make_model(helper.make_node("Relu", ["nowhere"], ["y"]), {"x": np.ones(2, np.float32)}, ["y"])
    with pytest.raises(ModelLoadError, match="nowhere"):
        normalize(proto)


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all", b"\x08\x07\x12\x04junk" * 10])
def test_unreadable_files_are_one_line_errors(tmp_path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_missing_and_directory_paths(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "none.onnx")
    with pytest.raises(ModelLoadError, match="directory"):
        load_model(tmp_path)


def test_save_is_atomic_clamps_ir_and_round_trips(tmp_path) -> None:
    proto = _mul_add()
    proto.ir_version = 14
    out = save_model(normalize(proto), tmp_path / "m.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    again = onnx.load(str(out))
    assert again.ir_version == SAVE_IR_VERSION  # opset 17 needs only IR 8: lowered to 10 for older parsers
    x = {"x": np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)}
    np.testing.assert_allclose(run_ort(again, x)[0], run_executor(again, x)[0], rtol=1e-6)


def test_save_into_missing_directory_leaves_nothing(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        save_model(normalize(_mul_add()), tmp_path / "missing" / "m.onnx")
    assert not os.listdir(tmp_path)


def test_external_data_is_read(tmp_path) -> None:
    proto = _mul_add()
    big = np.arange(4096, dtype=np.float32)
    proto.graph.initializer.append(numpy_helper.from_array(big, "big"))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=0)
    model = load_model(tmp_path / "ext.onnx")
    np.testing.assert_array_equal(model.weight("big"), big)


def test_symbolic_batch_resolves_and_other_symbols_need_a_shape() -> None:
    proto = make_model(helper.make_node("Relu", ["x"], ["y"]), {"x": np.ones((1, 3, 4, 4), np.float32)}, ["y"])
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[2].dim_param = "N", "H"
    model = normalize(proto)
    with pytest.raises(GraphError, match="'H'"):
        resolve_input_shapes(model)
    assert resolve_input_shapes(model, {"x": (2, 3, 8, 4)}) == {"x": (2, 3, 8, 4)}


def test_normalized_reads_a_model_as_normalize_does_and_leaves_it_alone() -> None:
    with_constant = OnnxModel(_mul_add(), None)
    before = with_constant.proto.SerializeToString()
    read = normalized(with_constant)
    assert "c" in read.initializers and read.proto is not with_constant.proto  # lifted, on a copy
    assert with_constant.proto.SerializeToString() == before
    already = normalize(_mul_add())  # nothing left to lift: wrapped as it stands, not copied
    before = already.proto.SerializeToString()
    assert normalized(already).proto is already.proto
    assert already.proto.SerializeToString() == before


def test_sparse_value_constant_is_lifted_and_runs() -> None:
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([4.0], np.float32), "s"), numpy_helper.from_array(np.array([2], np.int64)), [3]
    )
    node = helper.make_node("Constant", [], ["c"], sparse_value=sparse)
    proto = make_model([node, helper.make_node("Add", ["x", "c"], ["y"])], {"x": np.zeros(3, np.float32)}, ["y"])
    model = normalize(proto)
    np.testing.assert_array_equal(model.weight("c"), [0, 0, 4])
    np.testing.assert_array_equal(run_executor(proto, {"x": np.ones(3, np.float32)})[0], [1, 1, 5])


def test_save_keeps_the_ir_an_opset_needs(tmp_path) -> None:
    proto = _mul_add()
    proto.ir_version = 13
    proto.opset_import[0].version = 23  # opset 23 needs IR 11
    out = save_model(proto, tmp_path / "m.onnx")
    assert onnx.load(str(out)).ir_version == 11
    proto.ir_version = 7
    assert onnx.load(str(save_model(proto, tmp_path / "m7.onnx"))).ir_version == 7


def test_save_leaves_the_callers_model_as_it_was(tmp_path, monkeypatch) -> None:
    proto = _mul_add()
    proto.ir_version = 13
    before = proto.SerializeToString()
    save_model(proto, tmp_path / "m.onnx")
    assert proto.SerializeToString() == before

    def full_disk(*args, **kwargs) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    with pytest.raises(ModelLoadError, match="No space left"):
        save_model(proto, tmp_path / "full.onnx")
    assert proto.SerializeToString() == before
    assert not (tmp_path / "full.onnx").exists()


def test_weights_apart_are_written_beside_the_model_without_touching_it(tmp_path) -> None:
    from onnx import TensorProto

    from smart_onnx.model import write_weights_apart

    big, small = np.arange(600, dtype=np.float32).reshape(2, 300), np.ones(3, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "big"], ["h"]), helper.make_node("Add", ["h", "h"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 300])],
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=14)
    proto.metadata_props.add(key="k", value="v")
    before = proto.SerializeToString()
    path = write_weights_apart(proto, tmp_path / "m.onnx", ir_version=9)
    assert proto.SerializeToString() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx.data").stat().st_size == big.nbytes  # the 12-byte tensor stays inside
    skeleton = onnx.load(str(path), load_external_data=False)
    assert [t.data_location for t in skeleton.graph.initializer] == [TensorProto.EXTERNAL, TensorProto.DEFAULT]
    loaded = onnx.load(str(path))
    assert loaded.ir_version == 9 and loaded.metadata_props[0].value == "v"
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), big)
    loaded.ir_version = 14
    loaded.graph.initializer[0].ClearField("external_data")
    loaded.graph.initializer[0].ClearField("data_location")
    assert loaded.SerializeToString() == before


def test_proto_bytes_is_the_serialised_size_but_for_the_header() -> None:
    from smart_onnx.model import proto_bytes

    proto = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": np.zeros((1, 64), np.float32)}, ["y"],
                       {"w": np.ones((64, 500), np.float32)})
    header = proto.ByteSize() - proto_bytes(proto)  # inputs, outputs, names, opsets: not the weights or nodes
    assert 0 <= header < 200 and proto_bytes(proto) > 64 * 500 * 4
