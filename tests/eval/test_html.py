"""The HTML report: self-contained, numbers present, renders in headless Chromium when it is installed."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import pytest

from smart_onnx.eval.html import render_html, write_html
from smart_onnx.report import PruneReport
from smart_onnx.search import History

_TOOL = Path(__file__).resolve().parents[2] / "tools" / "screenshot_report.py"


def _tool():
    spec = importlib.util.spec_from_file_location("screenshot_report", _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layer(i: int, op: str, sparsity: float) -> dict:
    before = 64 * (i + 1)
    after = round(before * (1 - sparsity))
    return {"name": f"/block{i}/{op}", "op": op, "weight": f"w{i}", "shape_before": [8, 8 * (i + 1)],
            "shape_after": [8, 8 * (i + 1)], "params_before": before, "params_after": after, "sparsity": sparsity,
            "macs_before": 100 * before, "macs_after": 100 * after}


def prune_report() -> PruneReport:
    """A report as ``smart-onnx prune`` writes it (read back from its JSON), with a profile check."""
    latency = {"reference": {"batch": 1, "median_ms": 1.25, "p90_ms": 1.5, "repeats": 20, "threads": 2},
               "candidate": {"batch": 1, "median_ms": 0.75, "p90_ms": 0.9, "repeats": 20, "threads": 2}}
    layers = [_layer(i, op, s) for i, (op, s) in enumerate([("Conv", 0.0), ("Conv", 0.625), ("MatMul", 0.5),
                                                              ("Gemm", 0.25)])]
    check_layer = {"name": "/block1/Conv", "op_type": "Conv", "weight": "w1", "shape": [8, 16], "out_channels": 8,
                   "pattern": "unstructured", "sparsity": 0.625, "dense_only": False, "precision": "float32",
                   "accelerated": "no", "why": "not a block pattern", "not_judged": [],
                   "violations": [{"layer": "/block1/Conv", "rule": "pattern",
                                   "message": "zeros are not 16x8x1x1 blocks"}]}
    return PruneReport.from_dict({
        "command": "smart-onnx prune m.onnx --data calib.npz --sparsity 0.5 --html <r.html>",
        "seed": 0, "mode": "block", "method": "smart", "budget": "params", "target": "npu-a",
        "block": {"/block0/Conv": [16, 8, 1, 1]}, "nm": None, "search": {"sparsity": 0.5},
        "steps": {"steps": 4, "finetune_steps": 3, "step_seconds": None, "reason": "given"}, "training": {},
        "sparsity": {"requested": 0.5, "achieved_params": 0.4321, "achieved_macs": 0.3579, "budget": "params"},
        "layers": layers,
        "frozen_groups": [{"id": 3, "layers": ["/fc/Gemm"], "channels": 10, "reason": "its channels reach output"}],
        "outputs": [{"name": "logits", "role": "class", "reason": "test", "rank": 2, "class_axis": 1,
                     "batch_axis": 0, "scores": "logits"}],
        "label_output": "logits", "export_relative_error": 0.0,
        "export_check": {"error": 0.0, "executor_error": 0.0, "tolerance": 1e-4},
        "history": {"loss": [1.0, 0.5, 0.25, 0.2], "tau": [1.0, 0.3, 0.1, 0.03], "sparsity": [0.5] * 4,
                    "finetune_loss": [0.2, 0.15, 0.1]},
        "eval": {"samples": 40, "outputs": [{"name": "logits", "cosine": 0.987654, "relative_error": 0.0123,
                                             "top1_agreement": 0.925, "accuracy": 0.8, "reference_accuracy": 0.825,
                                             "role": "class", "fidelity": 0.925}],
                 "latency": {"1": latency}},
        "fidelity": {"min_fidelity": None, "passed": True, "degraded": [], "warnings": [], "worst": "logits",
                     "worst_fidelity": 0.925},
        "check": {"profile": "npu-a", "passed": False, "notes": ["grouped convs stay dense"], "layers": [check_layer]},
        "seconds": {"search": 12.5, "finetune": 3.25},
        "totals": {"params_before": 640, "params_after": 400, "macs_before": 64000, "macs_after": 40000,
                   "params_ratio": 0.625, "macs_ratio": 0.625},
        "provenance": {},
    })


def test_page_is_self_contained_with_numbers() -> None:
    page = render_html(prune_report(), title="prune <m.onnx>")
    # Sparsity chart, weights/MACs chart, loss/temperature chart.
    assert page.count('src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    for text in ("43.21%", "35.79%", "0.98765", "92.50%", "82.50%", "80.00%", "1.250", "0.750", "x0.60",
                 "/block1/Conv", "62.50%", "zeros are not 16x8x1x1 blocks", "npu-a", "FAIL",
                 "its channels reach output", "16x8x1x1", "64,000"):
        assert text in page, text
    assert "prune &lt;m.onnx&gt;" in page and "&lt;r.html&gt;" in page  # escaped, not markup


def test_sections_follow_what_the_report_has() -> None:
    bare = replace(prune_report(), command="smart-onnx prune a", layers=[], eval=None, fidelity=None, check=None,
                   history=History())
    page = render_html(bare)
    assert "data:image/png" not in page and "Profile check" not in page and "smart-onnx prune a" in page
    assert "not judged (no evaluation data)" not in page  # no evaluation section at all


def test_write_is_atomic(tmp_path) -> None:
    out = write_html(prune_report(), tmp_path / "r.html")
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["r.html"]


def test_distinct_colors(tmp_path) -> None:
    from PIL import Image

    tool = _tool()
    Image.new("RGB", (8, 8), "white").save(tmp_path / "blank.png")
    assert tool.distinct_colors(tmp_path / "blank.png") == 1


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is not installed")
def test_screenshot_renders(tmp_path) -> None:
    tool = _tool()
    page = write_html(prune_report(), tmp_path / "r.html")
    png = tool.screenshot(page, tmp_path / "r.png", size=(1000, 1000))
    assert tool.distinct_colors(png) > 50  # text, tables and plots, not a blank page


def test_a_degraded_prune_page_says_what_may_help() -> None:
    report = prune_report()
    assert "What may help" not in render_html(report)  # faithful
    report.fidelity = replace(report.fidelity, degraded=["logits"], warnings=["output 'logits' (class): low"])
    page = render_html(report)
    assert "What may help" in page and "<li>a lower --sparsity than 50%</li>" in page
