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
from smart_onnx.cli.main import cli
from smart_onnx.provenance import PROVENANCE_KEYS
from tests.zoo import export, resnet_like

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
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_writes_a_model_that_passes_the_full_checker(files: Path, mode: str) -> None:
    out, report = _prune(files, mode, *MODES[mode])
    onnx.checker.check_model(str(out), full_check=True)
    proto = onnx.load(str(out))
    assert proto.ir_version <= 10
    assert not proto.graph.sparse_initializer
    assert report["check"]["passed"], report["check"]["violations"]
    target = "npu-2to4" if mode == "nm" else "npu-block"
    res = CliRunner().invoke(cli, ["check", str(out), "--target", target])
    assert res.exit_code == 0, res.output
    meta = {e.key: e.value for e in proto.metadata_props}
    assert set(PROVENANCE_KEYS) <= set(meta)
    assert meta["smart_onnx.version"] == smart_onnx.__version__
    assert meta["smart_onnx.mode"] == mode.split("-")[0] and meta["smart_onnx.quantized"] == "no"
    assert meta["smart_onnx.target"] == target
    assert meta["smart_onnx.source_sha256"] == hashlib.sha256((files / "cnn.onnx").read_bytes()).hexdigest()
    assert float(meta["smart_onnx.sparsity_achieved"]) == pytest.approx(report["sparsity"]["achieved_params"],
                                                                         abs=1e-6)
    assert float(meta["smart_onnx.sparsity_requested"]) == report["sparsity"]["requested"]
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
