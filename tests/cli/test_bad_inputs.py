"""The bad-input matrix of ``smart-onnx prune``: every row is refused cleanly.

Each row asserts exit code 2 (130 for SIGINT), a one-line message without a traceback,
that no output, report or temp file appears, and that the input model is byte-identical.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper

from devkit.zoo import export, mlp_gemm
from smart_onnx.cli.main import cli
from tests.helpers import make_model

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--steps", "2", "--finetune-steps", "1", "--batch-size", "4", "-q", "--no-latency"]


def _image_model() -> onnx.ModelProto:
    module, example = mlp_gemm()  # input (N, 1, 8, 8): also a valid grayscale-image model
    return export(module, example, dynamo=False, opset=17)


def _two_input_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("MatMul", ["s", "w"], ["y"])]
    return make_model(nodes, {"a": np.zeros((1, 3, 8, 8), np.float32), "b": np.zeros((1, 3, 8, 8), np.float32)},
                      ["y"], {"w": rng.standard_normal((8, 4)).astype(np.float32)})


def _int_input_model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]), helper.make_node("MatMul", ["e", "w"], ["y"])]
    return make_model(nodes, {"ids": np.zeros((1, 5), np.int64)}, ["y"],
                      {"emb": rng.standard_normal((10, 8)).astype(np.float32),
                       "w": rng.standard_normal((8, 6)).astype(np.float32)})


def _custom_op_model() -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("FancyGate", ["h"], ["y"], domain="com.example")]
    return make_model(nodes, {"x": np.zeros((1, 8), np.float32)}, ["y"],
                      {"w": rng.standard_normal((8, 6)).astype(np.float32)}, extra_opsets={"com.example": 1})


@pytest.fixture(scope="module")
def protos() -> dict[str, onnx.ModelProto]:
    return {"m": _image_model(), "multi": _two_input_model(), "ints": _int_input_model(),
            "custom": _custom_op_model()}


@pytest.fixture
def work(tmp_path: Path, protos) -> Path:
    """A folder with the models, good calibration data and a listing taken after setup."""
    rng = np.random.default_rng(0)
    for name, proto in protos.items():
        onnx.save(proto, str(tmp_path / f"{name}.onnx"))
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    return tmp_path


def _listing(*dirs: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def _assert_one_line_refusal(output: str, match: str, usage: bool = False) -> None:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert match.lower() in errors[0].lower(), output
    if not usage:  # click's own usage errors add "Usage:" / "Try ..." lines around the one error line
        assert [line for line in output.splitlines() if line.strip()] == errors, output


def refused(work: Path, args: list[str], match: str, *, model: str = "m.onnx", usage: bool = False,
            extra_dirs: tuple[Path, ...] = ()) -> None:
    """Run ``prune`` on work/model with args; exit 2, one line, nothing written, input untouched."""
    before = _listing(work, *extra_dirs)
    res = CliRunner().invoke(cli, ["prune", str(work / model), *args, *FAST])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    _assert_one_line_refusal(res.output, match, usage)
    assert _listing(work, *extra_dirs) == before  # no output, report or temp file; input byte-identical


def _data(work: Path) -> list[str]:
    return ["--data", str(work / "calib.npz"), "--sparsity", "0.5"]


# --- the model --------------------------------------------------------------------------------------------------


def test_missing_model(work: Path) -> None:
    refused(work, _data(work), "does not exist", model="nope.onnx")


def test_corrupt_model(work: Path) -> None:
    (work / "bad.onnx").write_bytes(np.random.default_rng(3).bytes(4096))
    refused(work, _data(work), "not a readable ONNX model", model="bad.onnx")


def test_truncated_model(work: Path) -> None:
    full = (work / "m.onnx").read_bytes()
    (work / "half.onnx").write_bytes(full[: len(full) // 2])
    refused(work, _data(work), "not a readable ONNX model", model="half.onnx")


def test_model_with_unsupported_op(work: Path) -> None:
    x = np.random.default_rng(4).standard_normal((8, 8)).astype(np.float32)
    np.savez(work / "x.npz", x=x)
    refused(work, ["--data", str(work / "x.npz"), "--sparsity", "0.5"],
            "op FancyGate (domain com.example) at node 'FancyGate_1' (opset 1) is not supported",
            model="custom.onnx")


# --- the data ---------------------------------------------------------------------------------------------------


def test_data_of_wrong_shape(work: Path) -> None:
    np.savez(work / "wrong.npz", input=np.zeros((8, 1, 7, 8), np.float32))
    refused(work, ["--data", str(work / "wrong.npz"), "--sparsity", "0.5"],
            "input 'input' in " + str(work / "wrong.npz") + " has shape [8, 1, 7, 8], but the model expects "
            "[batch, 1, 8, 8]")


def test_data_of_wrong_dtype(work: Path) -> None:
    np.savez(work / "ids.npz", ids=np.full((8, 5), 1.5, np.float32))
    refused(work, ["--data", str(work / "ids.npz"), "--sparsity", "0.5"],
            "input 'ids' in " + str(work / "ids.npz") + " has 40 non-integer values, but the model's input is int64",
            model="ints.onnx")


def test_data_with_wrong_input_names(work: Path) -> None:
    np.savez(work / "names.npz", image=np.zeros((8, 1, 8, 8), np.float32))
    refused(work, ["--data", str(work / "names.npz"), "--sparsity", "0.5"],
            "has arrays ['image'], but the model's inputs are ['input']")


def test_empty_data_folder(work: Path) -> None:
    (work / "empty").mkdir()
    refused(work, ["--data", str(work / "empty"), "--sparsity", "0.5"], "empty holds no data files")


def test_nan_in_data(work: Path) -> None:
    x = np.random.default_rng(5).standard_normal((16, 1, 8, 8)).astype(np.float32)
    x[3, 0, 2, 2] = np.nan
    np.savez(work / "nan.npz", input=x)
    refused(work, ["--data", str(work / "nan.npz"), "--sparsity", "0.5"],
            "input 'input' in " + str(work / "nan.npz") + " has 1 NaN")


def test_images_for_a_multi_input_model(work: Path) -> None:
    from PIL import Image

    (work / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(work / "imgs" / f"{i}.png")
    refused(work, ["--data", str(work / "imgs"), "--sparsity", "0.5"], "can only feed a single-input model",
            model="multi.onnx")


# --- the options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sparsity", ["-0.1", "1.0", "1.5"])
def test_sparsity_out_of_range(work: Path, sparsity: str) -> None:
    refused(work, ["--data", str(work / "calib.npz"), "--sparsity", sparsity], "sparsity")


@pytest.mark.parametrize("target,mode", [("npu-block", "block"), ("npu-channel", "channel")])
def test_sparsity_missing_outside_nm_mode(work: Path, target: str, mode: str) -> None:
    refused(work, ["--data", str(work / "calib.npz"), "--target", target], f"--sparsity is required in {mode} mode")


def test_sparsity_contradicting_the_nm_pattern(work: Path) -> None:
    refused(work, ["--data", str(work / "calib.npz"), "--target", "npu-2to4", "--sparsity", "0.3"],
            "N:M 2:4 prunes exactly 50% of each weight; --sparsity 0.3 contradicts it "
            "(leave --sparsity out in nm mode)")


def test_sparsity_out_of_reach_behind_frozen_groups(work: Path) -> None:
    """--sparsity counts all prunable weights: where frozen channel groups hold too many, refused up front."""
    from tests.transformers import moments_layernorm_model

    onnx.save(moments_layernorm_model(hidden_output=True).proto, str(work / "ln.onnx"))  # hidden width: frozen
    x = np.random.default_rng(0).uniform(0, 2, (16, 12, 16)).astype(np.float32)
    np.savez(work / "ln.npz", x=x)
    refused(work, ["--data", str(work / "ln.npz"), "--target", "npu-channel", "--sparsity", "0.95"],
            "--sparsity 0.95 is out of reach in channel mode: at most 80.0% of this model's prunable weights can "
            "be removed (8.6% sit in 2 layers it cannot prune: 'embed.matmul': group 0 is frozen", model="ln.onnx")


def test_unknown_mode(work: Path) -> None:
    refused(work, [*_data(work), "--mode", "diagonal"], "--mode", usage=True)


@pytest.mark.parametrize("option", ["--lr", "--score-lr", "--distill-temperature"])
def test_nan_setting(work: Path, option: str) -> None:
    refused(work, [*_data(work), option, "nan"], option)


def test_block_larger_than_every_layer(work: Path) -> None:
    """The default target names the blocks its NPU runs; a block it does not allow is refused up front."""
    if not _has_target_option():
        pytest.xfail("without --target the all-zero model is written (see tests/fuzz/test_oracles.py)")
    refused(work, ["--data", str(work / "calib.npz"), "--sparsity", "0.5", "--block", "100x100"],
            "block 100x100 is not allowed by target")


def _has_target_option() -> bool:
    return "--target" in CliRunner().invoke(cli, ["prune", "--help"]).output


@pytest.mark.skipif(not _has_target_option(), reason="prune --target (hardware profiles) has not landed yet")
def test_unknown_profile(work: Path) -> None:
    refused(work, [*_data(work), "--target", "no-such-npu"], "no-such-npu")


@pytest.mark.skipif(not _has_target_option(), reason="prune --target (hardware profiles) has not landed yet")
def test_malformed_profile(work: Path) -> None:
    (work / "bad.toml").write_text("name = 'x'\n[block\nsize = 4x4\n")
    refused(work, [*_data(work), "--target", str(work / "bad.toml")], "bad.toml")


def test_device_cuda_without_cuda(work: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refused(work, [*_data(work), "--device", "cuda"], "CUDA is not available")


# --- the output -------------------------------------------------------------------------------------------------


def test_output_in_missing_directory(work: Path) -> None:
    refused(work, [*_data(work), "-o", str(work / "missing" / "out.onnx")], "does not exist")


def test_output_under_a_file(work: Path) -> None:
    """Root-proof 'unwritable directory': the parent is a regular file."""
    (work / "afile").write_text("x")
    refused(work, [*_data(work), "-o", str(work / "afile" / "out.onnx")], "afile")


def test_output_in_read_only_directory(work: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: directory permissions do not stop root (see test_output_under_proc)")
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        refused(work, [*_data(work), "-o", str(ro / "out.onnx")], "not writable")
    finally:
        ro.chmod(0o755)


def test_output_under_proc(work: Path) -> None:
    """/proc refuses new files even for root (os.access says writable): one line, no traceback, nothing left."""
    refused(work, [*_data(work), "-o", "/proc/smart-onnx-test.onnx", "--report", str(work / "r.json")], "/proc")


def test_report_under_proc(work: Path) -> None:
    """The report path is checked like the model path: no model is left behind when the report fails."""
    refused(work, [*_data(work), "-o", str(work / "out.onnx"), "--report", "/proc/smart-onnx-test.json"], "/proc")


def test_output_equal_to_input(work: Path) -> None:
    refused(work, [*_data(work), "-o", str(work / "m.onnx")], "is the input model")


def test_output_equal_to_input_by_another_spelling(work: Path) -> None:
    refused(work, [*_data(work), "-o", str(work / "." / "sub" / ".." / "m.onnx")], "is the input model")


# --- interrupt --------------------------------------------------------------------------------------------------


def test_sigint_during_search(work: Path) -> None:
    out = work / "out.onnx"
    before = _listing(work)
    cmd = [sys.executable, "-m", "smart_onnx.cli.main", "prune", str(work / "m.onnx"), "--data",
           str(work / "calib.npz"), "--sparsity", "0.5", "--steps", "100000", "--batch-size", "4",
           "--no-latency", "-o", str(out)]
    # A runner started in the background of a non-interactive shell (nohup ... &) ignores SIGINT, and a child
    # inherits that: Python then installs no KeyboardInterrupt handler and the signal would do nothing.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stdout.read1(256), b"")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    # The bar label, with its padding: the bare word is also in the temp folder's name, printed earlier.
    while b"search  " not in b"".join(chunks) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, b"".join(chunks).decode()
    time.sleep(1.0)  # well inside the search: 100000 steps
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    reader.join(timeout=10)
    output = b"".join(chunks).decode(errors="replace")
    assert code == 130, output
    assert "Traceback" not in output, output
    tail = [line for line in output.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert tail == "Interrupted; nothing was written.", output
    assert _listing(work) == before and not out.exists()

