"""``check`` and ``inspect`` on models with symbolic spatial dims and no ``--input-shape`` (issue 15).

Structural rules are judged from the weights alone; what needs activation shapes is reported
as not judged instead of refusing the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from devkit.zoo import export, resnet_like
from smart_onnx.cli.main import cli
from smart_onnx.hw import check_model, load_profile
from smart_onnx.model import OnnxModel, load_model
from tests.hw import magnitude_prune, small_cnn, weight


def symbolic_width(model: OnnxModel | onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose input has a symbolic batch and width (an OCR-style dynamic width)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto if isinstance(model, OnnxModel) else model)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[-1].dim_param = "N", "W"
    del proto.graph.value_info[:]  # nothing concrete downstream of the dynamic width
    return proto


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shapeless")
    onnx.save(symbolic_width(small_cnn()), str(d / "dense.onnx"))
    onnx.save(symbolic_width(small_cnn(12)), str(d / "c12.onnx"))
    weights = {name: magnitude_prune(weight(name), 0.5) for name in ("c1.w", "c2.w", "fc.w")}
    onnx.save(symbolic_width(small_cnn(weights=weights)), str(d / "unstructured.onnx"))
    return d


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_symbolic_width_model_is_checked_without_input_shape(files: Path) -> None:
    res = _run("check", str(files / "dense.onnx"))
    assert res.exit_code == 0, res.output
    assert "PASS: the model complies with npu-block." in res.output
    assert "no concrete input shapes (x: Nx8x6xW)" in res.output


def test_patterns_are_judged_from_the_weights_alone(files: Path) -> None:
    res = _run("check", str(files / "unstructured.onnx"), "--json")
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert {v["layer"] for v in data["violations"]} == {"c1", "c2", "fc"}
    assert {v["rule"] for v in data["violations"]} == {"pattern"}


def test_a_misaligned_count_is_not_judged_without_shapes_and_judged_with_them(files: Path) -> None:
    res = _run("check", str(files / "c12.onnx"))
    assert res.exit_code == 0, res.output
    assert "Not judged (1): needs --input-shape" in res.output
    assert "[channels] layer 'c1': 12 output channels" in res.output
    assert "1 rule(s) not judged" in res.output
    data = json.loads(_run("check", str(files / "c12.onnx"), "--json").output)
    assert [(n["layer"], n["rule"]) for n in data["not_judged"]] == [("c1", "channels")]
    shaped = _run("check", str(files / "c12.onnx"), "--input-shape", "x:1x8x6x6")
    assert shaped.exit_code == 1 and "[channels] layer 'c1'" in shaped.output
    # Its own count passes as the original's, shapes or not.
    assert _run("check", str(files / "c12.onnx"), "--reference", str(files / "c12.onnx")).exit_code == 0


def test_library_check_without_shapes_names_no_flag(files: Path) -> None:
    report = check_model(load_model(files / "c12.onnx"), load_profile("npu-block"))
    assert report.passed and [n.rule for n in report.not_judged] == ["channels"]
    assert "--" not in report.not_judged[0].reason


def test_inspect_lists_layers_without_input_shape(files: Path) -> None:
    res = _run("inspect", str(files / "dense.onnx"))
    assert res.exit_code == 0, res.output
    assert "Prunable layers (3)" in res.output and "needs --input-shape" in res.output
    assert "Channel groups: not analysed" in res.output
    data = json.loads(_run("inspect", str(files / "dense.onnx"), "--json").output)
    assert [lay["name"] for lay in data["analysis"]["layers"]] == ["c1", "c2", "fc"]
    assert data["shapes_known"] is False and data["analysis"]["groups"] == []
    shaped = json.loads(_run("inspect", str(files / "dense.onnx"), "--json", "--input-shape", "x:1x8x6x6").output)
    assert shaped["shapes_known"] is True and shaped["analysis"]["groups"]


def test_smart_onnx_output_with_a_dynamic_width_passes_check(tmp_path: Path) -> None:
    module, example = resnet_like(width=16)
    onnx.save(export(module, example, dynamo=False, opset=17), str(tmp_path / "cnn.onnx"))
    x = np.random.default_rng(0).standard_normal((24, *example.shape[1:])).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{load_model(tmp_path / "cnn.onnx").inputs[0].name: x})
    for mode in (["--sparsity", "0.5"], ["--mode", "channel", "--sparsity", "0.3"]):
        out = tmp_path / "pruned.onnx"
        res = _run("prune", str(tmp_path / "cnn.onnx"), "--data", str(tmp_path / "calib.npz"), "-o", str(out),
                   "--steps", "2", "--finetune-steps", "1", "--batch-size", "8", "-q", "--no-latency", *mode)
        assert res.exit_code == 0, res.output
        onnx.save(symbolic_width(onnx.load(str(out))), str(out))
        checked = _run("check", str(out))
        assert checked.exit_code == 0, checked.output
        assert "no concrete input shapes" in checked.output


@pytest.mark.realmodels
@pytest.mark.parametrize("name", ["nudenet", "paraphrase-minilm"])
def test_real_models_with_symbolic_dims_are_checked_without_shapes(realmodels, name: str) -> None:
    res = _run("check", str(realmodels(name).path), "--reference", str(realmodels(name).path), "--json")
    data = json.loads(res.output)
    assert res.exit_code == 0, data["violations"]
    assert any("no concrete input shapes" in n for n in data["notes"])
