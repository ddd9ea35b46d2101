"""The prune report and the eval result as typed records: JSON keys as before plus schema_version, exact round trip."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.eval import NO_LATENCY, LatencySettings, compare_models, evaluate, judge_fidelity
from smart_onnx.graph import infer_output_roles, label_output
from smart_onnx.hw import check_model, load_profile
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.quant import QuantizeOptions, evaluate_quantized, quantize_model
from smart_onnx.report import SCHEMA_VERSION, AgreementGate, EvalResult, PruneReport, QuantizeCommandReport
from smart_onnx.search import SearchConfig
from tests.helpers import held_batches

# The keys every report had before the report was typed, in their order (the JSON users read).
KEYS = ["command", "seed", "mode", "method", "budget", "target", "block", "nm", "search", "steps", "training",
        "sparsity", "layers", "frozen_groups", "outputs", "label_output", "export_relative_error", "export_check",
        "history", "check", "eval", "fidelity", "seconds", "totals", "provenance"]


@pytest.fixture(scope="module")
def model_and_data():
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((32, *example.shape[1:])).astype(np.float32)
    with torch.no_grad():
        labels = module(torch.from_numpy(x)).argmax(1).numpy()
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs, labels=labels)
    return model, *data.split(0.25, seed=0)


@pytest.mark.parametrize(("mode", "target", "sparsity"), [("block", "npu-block", 0.3), ("nm", None, None)])
def test_prune_report_round_trips_and_keeps_its_keys(model_and_data, mode, target, sparsity) -> None:
    model, calib, hold = model_and_data
    search = SearchConfig(sparsity=sparsity, steps=2, finetune_steps=1, batch_size=8)
    options = PruneOptions(mode=mode, target=target and load_profile(target), search=search)
    report = prune(model, calib, hold, options, command="smart-onnx prune m.onnx").report
    report.output = "m.pruned.onnx"
    data = json.loads(report.to_json())
    assert data["schema_version"] == SCHEMA_VERSION
    expected = [k for k in KEYS if not (k == "check" and target is None)] + ["output"]
    assert list(data)[1:] == expected
    assert ("budget" in data["sparsity"]) == (mode != "nm")  # N:M: the pattern fixes the sparsity
    assert PruneReport.from_json(report.to_json()) == report
    assert PruneReport.from_dict(data).to_dict() == data
    # Written before the version and the rewrite check existed: version 1, no export check.
    old = {k: v for k, v in data.items() if k not in ("schema_version", "export_check")}
    assert PruneReport.from_dict(old).schema_version == 1 and PruneReport.from_dict(old).export_check is None


def test_eval_result_round_trips(model_and_data) -> None:
    model, calib, hold = model_and_data
    pruned = prune(model, calib, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=replace(
        SearchConfig(), sparsity=0.5, steps=1, finetune_steps=1, batch_size=8))).model
    comparison = compare_models(model, pruned, hold, latency=LatencySettings((1, 2), warmup=0, repeats=1))
    outputs = infer_output_roles(model)
    result = EvalResult("a.onnx", "b.onnx", "d.npz", None, comparison, outputs,
                        judge_fidelity(comparison.eval.outputs), AgreementGate(0.5, 0.75, True))
    data = json.loads(result.to_json())
    assert {"eval", "layers", "weights", "totals", "latency_settings", "macs_note", "outputs", "fidelity",
            "gate", "schema_version"} <= set(data)
    assert EvalResult.from_json(result.to_json()) == result


def test_quantized_evaluation_streams_the_batches_to_the_whole_sets_result(model_and_data, monkeypatch) -> None:
    model, calib, hold = model_and_data
    outcome = quantize_model(model, calib, QuantizeOptions(samples=8))
    roles = infer_output_roles(model)
    whole = evaluate(model, outcome.model, [(b.inputs, b.labels) for b in hold.batches(2)], outputs=roles,
                     label_output=label_output(roles, None, True))
    held = held_batches(monkeypatch)
    streamed = evaluate_quantized(outcome.model, model, hold, batch_size=2, latency=NO_LATENCY)
    assert len(held) >= 4 and max(held) <= 2  # read batch by batch, never all held
    assert streamed.versus["float"].outputs == whole.outputs


def test_quantize_report_round_trips_with_its_keys(model_and_data) -> None:
    model, calib, hold = model_and_data
    pruned = prune(model, calib, None, PruneOptions(mode="block", block=(4, 4, 1, 1), latency=False, search=replace(
        SearchConfig(), sparsity=0.5, steps=1, finetune_steps=1, batch_size=8))).model
    outcome = quantize_model(pruned, calib, QuantizeOptions(samples=8))
    info = outcome.info
    info.eval = evaluate_quantized(outcome.model, pruned, hold, dense=model, latency=NO_LATENCY)
    info.check = check_model(outcome.model, load_profile("npu-block"), reference=model)
    report = QuantizeCommandReport("smart-onnx quantize p.onnx", "p.onnx", "p.int8.onnx", info, {"k": "v"})
    data = json.loads(report.to_json())
    assert list(data) == ["schema_version", "command", "input", "output", "quantize", "provenance"]
    assert list(data["quantize"]) == ["format", "weights", "activations", "calibration", "onnxruntime", "layers",
                                      "zeros", "seconds", "eval", "check"]
    assert set(data["quantize"]["zeros"]) == {"float", "int8", "kept", "restored", "quantized_layers", "layers"}
    assert data["quantize"]["eval"]["passed"] and set(data["quantize"]["eval"]["versus"]) == {"float", "dense"}
    assert QuantizeCommandReport.from_json(report.to_json()) == report
