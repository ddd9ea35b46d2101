"""CLI: inspect and prune through click, with exit codes and files on disk."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from devkit.zoo import export, mlp_gemm
from smart_onnx.cli.main import cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    module, example = mlp_gemm()
    proto = export(module, example, dynamo=False, opset=17)
    onnx.save(proto, str(d / "m.onnx"))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    np.savez(d / "calib.npz", **{proto.graph.input[0].name: x})
    return d


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.startswith("smart-onnx, version")
    out = runner.invoke(cli, ["--help"]).output
    assert "inspect" in out and "prune" in out


def test_inspect_table_and_json(files) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(files / "m.onnx")])
    assert res.exit_code == 0, res.output
    assert "Prunable layers" in res.output and "Gemm" in res.output
    res = runner.invoke(cli, ["inspect", str(files / "m.onnx"), "--json"])
    info = json.loads(res.output)
    assert info["analysis"]["layers"] and info["unsupported"] == []


def test_prune_writes_model_and_report(files) -> None:
    out = files / "out.onnx"
    res = CliRunner().invoke(cli, ["prune", str(files / "m.onnx"), "--data", str(files / "calib.npz"),
                                   "--sparsity", "0.5", "--steps", "4", "--finetune-steps", "2",
                                   "--batch-size", "8", "-o", str(out), "-q", "--no-latency"])
    assert res.exit_code == 0, res.output
    report = json.loads((files / "out.json").read_text())
    assert report["sparsity"]["achieved_params"] >= 0.5
    assert "smart-onnx prune" in report["command"]
    onnx.checker.check_model(onnx.load(str(out)))


@pytest.mark.parametrize("sparsity", [[], ["--sparsity", "0.5"]], ids=["implied", "agreeing"])
def test_prune_nm_takes_the_patterns_sparsity(files, sparsity) -> None:
    out = files / "nm.onnx"
    res = CliRunner().invoke(cli, ["prune", str(files / "m.onnx"), "--data", str(files / "calib.npz"),
                                   "--target", "npu-2to4", *sparsity, "--steps", "2", "--finetune-steps", "1",
                                   "--batch-size", "8", "-o", str(out), "-q", "--no-latency"])
    assert res.exit_code == 0, res.output
    report = json.loads((files / "nm.json").read_text())
    assert report["mode"] == "nm" and report["nm"] == [2, 4]
    assert report["sparsity"]["requested"] == 0.5 and report["search"]["sparsity"] == 0.5


@pytest.mark.parametrize("args,match", [
    (["--sparsity", "1.5"], "sparsity"),
    (["--sparsity", "0.5", "--block", "4xq"], "block shape"),
    (["--sparsity", "0.5", "--device", "cuda:7"], "CUDA"),
])
def test_prune_bad_options_exit_2_and_write_nothing(files, args, match) -> None:
    out = files / "never.onnx"
    res = CliRunner().invoke(cli, ["prune", str(files / "m.onnx"), "--data", str(files / "calib.npz"), "-o", str(out),
                                   *args])
    assert res.exit_code == 2 and match in res.output and "Traceback" not in res.output
    assert not out.exists()
