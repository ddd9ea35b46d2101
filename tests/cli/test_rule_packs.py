"""Rule packs from documented toolchains (issue 15): tensorrt-2to4 and ort-cpu, and ``check --explain``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from smart_onnx.cli.main import cli
from smart_onnx.graph import find_prunable_layers
from smart_onnx.hw import check_model, dense_reasons, load_profile, nm_layers, profile_from_dict
from smart_onnx.hw.rules import ineligible
from smart_onnx.model import OnnxModel, normalize


def mlp(big: int = 256, seed: int = 0, width: int | str = 256) -> onnx.ModelProto:
    """x[N, width] -> Gemm big (transB) -> Relu -> Gemm 12 -> Relu -> ConvTranspose-free head Gemm 10."""
    rng = np.random.default_rng(seed)
    inits = {"w1": rng.standard_normal((big, 256)).astype(np.float32) * 0.05,
             "w2": rng.standard_normal((12, big)).astype(np.float32) * 0.05,
             "w3": rng.standard_normal((10, 12)).astype(np.float32) * 0.3}
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h1"], name="big", transB=1),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("Gemm", ["r1", "w2"], ["h2"], name="small", transB=1),
             helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
             helper.make_node("Gemm", ["r2", "w3"], ["logits"], name="head", transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def two_four(w: np.ndarray, axis: int) -> np.ndarray:
    """Zero the 2 smallest of every 4 along ``axis``."""
    moved = np.moveaxis(w.copy(), axis, -1)
    groups = moved.reshape(-1, 4)
    order = np.argsort(np.abs(groups), axis=1)[:, :2]
    np.put_along_axis(groups, order, 0.0, axis=1)
    return np.moveaxis(groups.reshape(moved.shape), -1, axis)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("packs")
    onnx.save(mlp(), str(d / "mlp.onnx"))
    proto = mlp()
    w1 = next(t for t in proto.graph.initializer if t.name == "w1")
    w1.CopyFrom(numpy_helper.from_array(two_four(numpy_helper.to_array(w1), 1), "w1"))
    onnx.save(proto, str(d / "mlp-24.onnx"))
    x = np.random.default_rng(1).standard_normal((64, 256)).astype(np.float32)
    np.savez(d / "calib.npz", x=x)
    return d


def test_tensorrt_eligibility_from_the_weights() -> None:
    profile = load_profile("tensorrt-2to4")
    layers = {lay.name: lay for lay in find_prunable_layers(normalize(mlp()))}
    assert ineligible(profile, layers["big"]) is None
    assert "12 output channels, not a multiple of 8" in ineligible(profile, layers["small"])
    assert "fewer than 256" in ineligible(profile, layers["small"])
    assert set(dense_reasons(profile, list(layers.values()))) == {"small", "head"}
    pattern, chosen = nm_layers(profile, list(layers.values()))
    assert pattern == (2, 4) and [lay.name for lay in chosen] == ["big"]


def test_explain_says_per_layer_whether_tensorrt_accelerates_it(files: Path) -> None:
    ref = ["--reference", str(files / "mlp.onnx")]  # the original's 12- and 10-channel layers are not pruning's
    res = CliRunner().invoke(cli, ["check", str(files / "mlp-24.onnx"), "--target", "tensorrt-2to4", "--explain", *ref])
    assert res.exit_code == 0, res.output
    assert "Does tensorrt-2to4 accelerate each layer? (0 of 3 yes)" in res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.split()[:1] in (["big"], ["small"],
                                                                                              ["head"])}
    assert "depends" in rows["big"] and "yes when the engine is built in float16 or int8" in rows["big"]
    assert " no " in rows["small"] and "12 output channels, not a multiple of 8" in rows["small"]
    assert "Rules from:" in res.output
    data = json.loads(CliRunner().invoke(cli, ["check", str(files / "mlp-24.onnx"), "--target", "tensorrt-2to4",
                                               "--json", *ref]).output)
    assert {lay["name"]: lay["accelerated"] for lay in data["layers"]} == {"big": "depends", "small": "no",
                                                                          "head": "no"}


def test_int8_2to4_layer_is_accelerated_by_tensorrt(files: Path) -> None:
    out = files / "mlp-24.int8.onnx"
    res = CliRunner().invoke(cli, ["quantize", str(files / "mlp-24.onnx"), "--data", str(files / "calib.npz"),
                                   "-o", str(out), "--activations", "int8", "--target", "tensorrt-2to4",
                                   "--reference", str(files / "mlp.onnx"), "--no-latency", "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["check", str(out), "--target", "tensorrt-2to4", "--explain"])
    assert res.exit_code == 0, res.output
    big = [line for line in res.output.splitlines() if line.startswith("big ")][-1]  # the explain table's row
    assert " yes " in big and "2:4, int8" in big


def test_unsupported_op_and_dense_weights_are_named() -> None:
    profile = load_profile("tensorrt-2to4")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 256, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256, 4, 4])],
                              [numpy_helper.from_array(w, "w")])
    model = normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    layer = check_model(model, profile).layers[0]
    assert layer.accelerated == ("no", "unsupported op: the target's sparse kernels cover Conv, Gemm, MatMul, "
                                       "not ConvTranspose")
    dense = check_model(normalize(mlp()), profile).layers[0]
    assert dense.accelerated == ("no", "dense weights: no zeros to skip")


def test_ort_cpu_explains_channel_alignment(files: Path) -> None:
    res = CliRunner().invoke(cli, ["check", str(files / "mlp.onnx"), "--target", "ort-cpu", "--explain",
                                   "--reference", str(files / "mlp.onnx")])
    assert res.exit_code == 0, res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.split()[:1] in (["big"], ["small"])}
    assert "dense kernels; 256 output channels fill whole blocks of 16" in rows["big"]
    assert "12 output channels are not a multiple of 16" in rows["small"]
    # zeros buy nothing on a dense CPU runtime: a 2:4 weight breaks the profile
    res = CliRunner().invoke(cli, ["check", str(files / "mlp-24.onnx"), "--target", "ort-cpu"])
    assert res.exit_code == 1 and "allows no sparse pattern" in res.output


def test_prune_for_tensorrt_prunes_only_eligible_layers(files: Path) -> None:
    out = files / "trt.onnx"
    res = CliRunner().invoke(cli, ["prune", str(files / "mlp.onnx"), "--data", str(files / "calib.npz"),
                                   "--target", "tensorrt-2to4", "--steps", "2", "--finetune-steps", "1",
                                   "--batch-size", "16", "-o", str(out), "-q", "--no-latency"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["check"]["passed"]
    sparsity = {row["name"]: row["sparsity"] for row in report["layers"]}
    assert sparsity["big"] == pytest.approx(0.5) and sparsity["small"] == 0 and sparsity["head"] == 0


def test_a_macs_rule_is_not_judged_without_shapes(tmp_path: Path) -> None:
    proto = mlp(width="W")  # a symbolic feature width: MACs need the input shape
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_value = 256
    dims[0].dim_param = "N"
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "W"
    w1 = next(t for t in proto.graph.initializer if t.name == "w1")
    w1.CopyFrom(numpy_helper.from_array(two_four(numpy_helper.to_array(w1), 1), "w1"))
    profile = profile_from_dict({"name": "macs", "ops": {"Gemm": {"nm": ["2:4"], "min_macs": 10_000}}})
    report = check_model(OnnxModel(normalize(proto).proto), profile)
    assert report.passed
    assert [(n.layer, n.rule) for n in report.not_judged] == [("big", "dense")]
    assert report.layers[0].accelerated[0] == "not judged"
