"""CLI: ``smart-onnx check`` exit codes 0/1/2, table and JSON; ``smart-onnx targets``."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from smart_onnx.cli.main import cli
from smart_onnx.hw import builtin_names
from tests.hw import magnitude_prune, small_cnn, weight


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("check")
    onnx.save(small_cnn().proto, str(d / "dense.onnx"))
    weights = {name: magnitude_prune(weight(name), 0.5) for name in ("c1.w", "c2.w", "fc.w")}
    onnx.save(small_cnn(weights=weights).proto, str(d / "unstructured.onnx"))
    onnx.save(small_cnn(12).proto, str(d / "c12.onnx"))
    (d / "bad.toml").write_text('name = "bad"\nchannel_alignment = 0\n')
    (d / "mine.toml").write_text('name = "mine"\n[ops.default]\nblocks = ["1x1"]\n')
    (d / "junk.onnx").write_bytes(b"not a model")
    return d


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_compliant_model_exits_0_with_a_table(files: Path) -> None:
    res = _run("check", str(files / "dense.onnx"))
    assert res.exit_code == 0, res.output
    assert "Check against npu-block (3 prunable layers)" in res.output
    assert "PASS: the model complies with npu-block." in res.output
    rows = [line.split() for line in res.output.splitlines()]
    assert [r[:2] for r in rows if r and r[0] in ("c1", "c2", "fc")] == [["c1", "Conv"], ["c2", "Conv"], ["fc", "Gemm"]]


def test_unstructured_model_exits_1_naming_layers_without_traceback(files: Path) -> None:
    res = _run("check", str(files / "unstructured.onnx"), "--target", "npu-block")
    assert res.exit_code == 1
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit)
    assert "FAIL: 3 of 3 layers break npu-block." in res.output
    assert "[pattern] layer 'c2'" in res.output and "[pattern] layer 'fc'" in res.output
    assert "[pattern] layer 'c1'" in res.output


def test_json_output_for_machines(files: Path) -> None:
    res = _run("check", str(files / "unstructured.onnx"), "--json")
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert data["passed"] is False and data["profile"] == "npu-block"
    assert [lay["name"] for lay in data["layers"]] == ["c1", "c2", "fc"]
    assert {v["layer"] for v in data["violations"]} == {"c1", "c2", "fc"}
    ok = json.loads(_run("check", str(files / "dense.onnx"), "--json").output)
    assert ok["passed"] is True and ok["violations"] == []


def test_reference_accepts_the_original_channel_counts(files: Path) -> None:
    assert _run("check", str(files / "c12.onnx")).exit_code == 1
    res = _run("check", str(files / "c12.onnx"), "--reference", str(files / "c12.onnx"))
    assert res.exit_code == 0, res.output


def test_profile_file_as_target(files: Path) -> None:
    res = _run("check", str(files / "unstructured.onnx"), "--target", str(files / "mine.toml"))
    assert res.exit_code == 0, res.output  # 1x1 blocks accept any zeros
    assert "block 1x1" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "bad.toml"], "field 'channel_alignment' must be at least 1"),
        (["--target", "npu-nothing"], "unknown target 'npu-nothing'"),
        (["--target", "absent.toml"], "does not exist"),
    ],
)
def test_bad_profile_exits_2_with_one_line(files: Path, args: list[str], message: str) -> None:
    args = [str(files / a) if a.endswith(".toml") else a for a in args]
    res = _run("check", str(files / "dense.onnx"), *args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1


@pytest.mark.parametrize("model", ["missing.onnx", "junk.onnx"])
def test_unreadable_model_exits_2(files: Path, model: str) -> None:
    res = _run("check", str(files / model))
    assert res.exit_code == 2 and res.output.startswith("Error: ")


def test_targets_lists_builtins_as_table_and_json() -> None:
    res = _run("targets")
    assert res.exit_code == 0
    assert all(name in res.output for name in builtin_names()) and "npu-block (default)" in res.output
    data = json.loads(_run("targets", "--json").output)
    assert [p["name"] for p in data] == builtin_names()
    assert {p["name"]: p["modes"] for p in data}["npu-2to4"] == ["nm", "channel"]
