"""Hand-off to vendor compilers (issue 15): every file prune writes is standard ONNX that passes the full checker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import smart_onnx
from devkit.zoo import export, resnet_like
from smart_onnx.cli.main import cli
from smart_onnx.hw.qdq import dequantized_view, is_quantized
from smart_onnx.model import load_model, tensor_to_array
from smart_onnx.provenance import PROVENANCE_KEYS
from smart_onnx.rewrite import read_block_sparsity

FAST = ["--steps", "2", "--finetune-steps", "1", "--batch-size", "8", "-q", "--no-latency"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("handoff")
    module, example = resnet_like(width=16)
    proto = export(module, example, dynamo=False, opset=17)
    onnx.save(proto, str(d / "cnn.onnx"))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    np.savez(d / "calib.npz", **{proto.graph.input[0].name: x})
    return d


def _prune(files: Path, name: str, *args: str):
    out = files / f"{name}.onnx"
    res = CliRunner().invoke(cli, ["prune", str(files / "cnn.onnx"), "--data", str(files / "calib.npz"),
                                   "-o", str(out), *FAST, *args])
    assert res.exit_code == 0, res.output
    return out, json.loads(out.with_suffix(".json").read_text())


MODES = {
    "block": ["--sparsity", "0.5"],
    "block-coo": ["--sparsity", "0.5", "--sparse-format", "coo"],
    "channel": ["--mode", "channel", "--sparsity", "0.3"],
    "nm": ["--target", "npu-2to4"],
    "block-int8": ["--sparsity", "0.5", "--quantize", "int8"],
    "channel-int8": ["--mode", "channel", "--sparsity", "0.3", "--quantize", "int8"],
    "nm-int8": ["--target", "npu-2to4", "--quantize", "int8", "--activations", "int8"],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_writes_a_model_that_passes_the_full_checker(files: Path, mode: str) -> None:
    out, report = _prune(files, mode, *MODES[mode])
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out))
    assert proto.ir_version <= 10
    assert not proto.graph.sparse_initializer
    assert report["check"]["passed"], report["check"]["violations"]
    target = "npu-2to4" if mode.startswith("nm") else "npu-block"
    res = CliRunner().invoke(cli, ["check", str(out), "--target", target])
    assert res.exit_code == 0, res.output
    meta = {e.key: e.value for e in proto.metadata_props}
    assert set(PROVENANCE_KEYS) <= set(meta)
    assert meta["smart_onnx.version"] == smart_onnx.__version__
    int8 = mode.endswith("-int8")
    assert meta["smart_onnx.mode"] == mode.split("-")[0]
    assert meta["smart_onnx.quantized"] == ("int8" if int8 else "no")
    if int8:
        assert is_quantized(proto) and report["quantize"]["check"]["passed"]
        assert report["quantize"]["zeros"]["kept"]
    assert meta["smart_onnx.target"] == target
    assert meta["smart_onnx.source_sha256"] == hashlib.sha256((files / "cnn.onnx").read_bytes()).hexdigest()
    assert float(meta["smart_onnx.sparsity_achieved"]) == pytest.approx(report["sparsity"]["achieved_params"],
                                                                         abs=1e-6)
    # N:M without --sparsity: the pattern's share of all prunable weights, which metadata holds to 6 digits.
    assert float(meta["smart_onnx.sparsity_requested"]) == pytest.approx(report["sparsity"]["requested"], abs=1e-6)
    assert report["provenance"] == {k: v for k, v in meta.items() if k in PROVENANCE_KEYS}
    shown = CliRunner().invoke(cli, ["inspect", str(out), "--json"])
    assert json.loads(shown.output)["provenance"] == report["provenance"]


def test_default_stores_zeroed_blocks_as_plain_initializers(files: Path) -> None:
    out, report = _prune(files, "default", "--sparsity", "0.5")
    proto = onnx.load(str(out))
    assert not any(n.op_type == "Constant" for n in proto.graph.node)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    zeros = sum(int(np.count_nonzero(inits[row["weight"]] == 0)) for row in report["layers"])
    assert zeros >= 0.5 * report["totals"]["params_before"] * 0.9


def _zero_blocks(array: np.ndarray, block: list[int]) -> int:
    """Aligned blocks (in the tensor's own axis order, edge blocks partial) whose elements are all zero."""
    grid = [-(-d // b) for d, b in zip(array.shape, block)]
    count = 0
    for index in np.ndindex(*grid):
        cell = array[tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block))]
        count += bool(np.all(cell == 0))
    return count


def _integer_weights(path: Path) -> dict[str, np.ndarray]:
    """Float weight name -> the INT8 integer tensor behind its DequantizeLinear (onnxruntime names it W_quantized)."""
    proto = onnx.load(str(path))
    out = {}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0].endswith("_quantized"):
            tensor = next(t for t in proto.graph.initializer if t.name == node.input[0])
            out[node.input[0].removesuffix("_quantized")] = onnx.numpy_helper.to_array(tensor)
    return out


def test_int8_keeps_every_zero_block_on_the_integer_weights(files: Path) -> None:
    float_path, float_report = _prune(files, "float-for-int8", "--sparsity", "0.5")
    blocks = read_block_sparsity(onnx.load(str(float_path)))
    assert blocks and sum(r["pruned_blocks"] for r in blocks.values()) > 0
    float_weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(float_path)).graph.initializer}
    out = files / "quantized.onnx"
    res = CliRunner().invoke(cli, ["quantize", str(float_path), "--data", str(files / "calib.npz"), "-o", str(out),
                                   "--reference", str(files / "cnn.onnx"), "--no-latency", "-q"])
    assert res.exit_code == 0, res.output
    onnx.checker.check_model(str(out), full_check=True)
    integers = _integer_weights(out)
    for name, record in blocks.items():
        q, w = integers[name], float_weights[name]
        assert q.dtype == np.int8
        np.testing.assert_array_equal(q == 0, w == 0)  # zero exactly where the float weight is zero
        assert _zero_blocks(q, record["block_shape"]) == _zero_blocks(w, record["block_shape"])
        assert _zero_blocks(q, record["block_shape"]) >= record["pruned_blocks"]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["quantize"]["check"]["passed"] and report["quantize"]["zeros"]["kept"]
    assert set(report["quantize"]["eval"]["versus"]) == {"float", "dense"}
    assert report["provenance"]["smart_onnx.quantized"] == "int8"
    assert report["provenance"]["smart_onnx.mode"] == "block"  # carried over from the float pruned model
    checked = CliRunner().invoke(cli, ["check", str(out), "--target", "npu-block", "--json"])
    assert checked.exit_code == 0, checked.output
    data = json.loads(checked.output)
    assert {lay["precision"] for lay in data["layers"]} == {"int8"}
    view, weights = dequantized_view(load_model(out))
    assert len(weights) >= len(blocks)
    assert all(tensor_to_array(view.initializers[v]).dtype == np.float32 for v in weights)


def test_dense_model_quantized_then_refused_twice(files: Path) -> None:
    out = files / "dense.int8.onnx"
    res = CliRunner().invoke(cli, ["quantize", str(files / "cnn.onnx"), "--data", str(files / "calib.npz"), "-o",
                                   str(out), "--calibration-samples", "16", "--no-latency", "-q"])
    assert res.exit_code == 0, res.output
    meta = {e.key: e.value for e in onnx.load(str(out)).metadata_props}
    assert meta["smart_onnx.mode"] == "none" and meta["smart_onnx.quantized"] == "int8"
    assert json.loads(out.with_suffix(".json").read_text())["quantize"]["calibration"]["samples"] == 16
    res = CliRunner().invoke(cli, ["quantize", str(out), "--data", str(files / "calib.npz"), "-o",
                                   str(files / "twice.onnx"), "-q"])
    assert res.exit_code == 2 and "already quantized" in res.output
    assert not (files / "twice.onnx").exists()
