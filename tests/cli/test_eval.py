"""CLI: ``smart-onnx eval`` exit codes, JSON, HTML, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smart_onnx.cli.main import cli
from tests.eval.models import write_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("cli_eval"))


def _eval(files, ref: str, cand: str, *extra: str, data: str = "data"):
    return CliRunner().invoke(cli, ["eval", str(files[ref]), str(files[cand]), "--data", str(files[data]), *extra])


@pytest.mark.parametrize(("cand", "minimum", "code"), [("ref", "1.0", 0), ("scrambled", "0.9", 1), ("half", "0", 0)])
def test_gate_exit_codes(files, cand, minimum, code) -> None:
    res = _eval(files, "ref", cand, "--min-agreement", minimum, "--no-latency")
    assert res.exit_code == code, res.output
    if code == 1:
        assert "FAIL: top-1 agreement 0." in res.output and "below --min-agreement 0.9" in res.output


def test_table(files) -> None:
    res = _eval(files, "ref", "half", "--threads", "1", "--repeats", "2", "--warmup", "1", "--latency-batch", "4")
    assert res.exit_code == 0, res.output
    for text in ("float weights (nonzero)", "360", "200", "median latency, batch 4", "agreement", "class",
                 "median of 2 runs after 1 warm-up runs, threads: 1", "effective MACs"):
        assert text.lower() in res.output.lower(), text


def test_json(files) -> None:
    res = _eval(files, "ref", "half", "--json", "--no-latency", "--min-agreement", "0")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {"reference", "candidate", "eval", "layers", "weights", "totals", "gate", "command"} <= set(out)
    assert out["eval"]["samples"] == 48 and out["eval"]["latency"] == {}
    assert out["weights"]["candidate"]["nonzero"] == 200 and out["gate"]["passed"] is True
    assert [r["name"] for r in out["layers"]] == ["conv", "fc"]
    assert out["command"].startswith("smart-onnx eval ") and out["command"].endswith("--min-agreement 0")


@pytest.mark.parametrize(("cand", "data", "needle"), [
    ("renamed", "data", "inputs ['image'] do not match the reference's ['x']"),
    ("half", "bad_data", "'x'"),
])
def test_bad_input_exits_2_with_one_line(files, cand, data, needle) -> None:
    res = _eval(files, "ref", cand, "--no-latency", data=data)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("Error: ") and needle in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("extra", "needle"), [(("--min-agreement", "2"), "--min-agreement"),
                                               (("--html", "/nonexistent/dir/r.html"), "/nonexistent/dir")])
def test_bad_option_exits_2(files, extra, needle) -> None:
    res = _eval(files, "ref", "half", *extra)
    assert res.exit_code == 2 and needle in res.output


def test_html(files, tmp_path) -> None:
    page = tmp_path / "eval.html"
    res = _eval(files, "ref", "half", "--no-latency", "--html", str(page))
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2 and "50.00%" in text
    assert [p.name for p in tmp_path.iterdir()] == ["eval.html"]


def test_prune_html(files, tmp_path) -> None:
    out, page = tmp_path / "p.onnx", tmp_path / "p.html"
    target = tmp_path / "tiny.toml"  # the default target's 16x8 blocks do not fit this small model
    target.write_text('name = "tiny"\ndescription = "1x8 blocks"\nmode = "block"\n[ops.default]\nblocks = ["1x8"]\n')
    res = CliRunner().invoke(cli, ["prune", str(files["ref"]), "--data", str(files["data"]), "--sparsity", "0.5",
                                   "--target", str(target), "--steps", "2", "--finetune-steps", "1", "--no-latency",
                                   "-q", "-o", str(out), "--html", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert f"wrote {page}" in res.output and text.count("data:image/png;base64,") == 3
    report = json.loads(out.with_suffix(".json").read_text())
    assert f"{100 * report['sparsity']['achieved_params']:.2f}%" in text


def test_prune_html_unwritable(files, tmp_path) -> None:
    res = CliRunner().invoke(cli, ["prune", str(files["ref"]), "--data", str(files["data"]), "--sparsity", "0.5",
                                   "-o", str(tmp_path / "p.onnx"), "--html", str(tmp_path / "missing" / "p.html")])
    assert res.exit_code == 2 and "HTML report" in res.output and not (tmp_path / "p.onnx").exists()
