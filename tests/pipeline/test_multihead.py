"""Every output counts: a real three-head model (class, boxes, landmarks) and a sequence model, prune and eval."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import smart_onnx.search.trainer as trainer_module
from devkit.zoo import export
from smart_onnx.cli.main import cli
from smart_onnx.data import Dataset, dataset_from_arrays
from smart_onnx.graph import infer_output_roles
from smart_onnx.model import OnnxModel, load_model, normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.multihead import build_multihead


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    d = tmp_path_factory.mktemp("multihead")
    model, calib, held = build_multihead().save(d)
    small = d / "eval500.npz"  # 500 of the 2000 held-out samples: enough to judge, a quarter of the time
    np.savez(small, **{k: v[:500] for k, v in np.load(held).items()})
    return {"dir": d, "model": model, "calib": calib, "eval": small}


def _prune(heads, *args: str, out: str = "p.onnx", steps: str = "12"):
    return CliRunner().invoke(cli, [
        "prune", str(heads["model"]), "--data", str(heads["calib"]), "--eval-data", str(heads["eval"]),
        "--steps", steps, "--finetune-steps", steps, "--batch-size", "16", "--no-latency", "-q",
        "-o", str(heads["dir"] / out), *args,
    ])


@pytest.fixture(scope="module")
def pruned(heads):
    """The three-head model at 30% 16x8 blocks (the default target), pruned once for the tests below."""
    res = _prune(heads, "--sparsity", "0.3")
    assert res.exit_code == 0, res.output
    return res


def test_regression_heads_stay_faithful_and_labels_go_to_the_class_head(heads, pruned) -> None:
    res = pruned
    report = json.loads((heads["dir"] / "p.json").read_text())
    roles = {o["name"]: o["role"] for o in report["outputs"]}
    assert roles == {"class_logits": "class", "boxes": "regression", "landmarks": "regression"}
    assert report["label_output"] == "class_logits"
    metrics = {o["name"]: o for o in report["eval"]["outputs"]}
    for name in ("boxes", "landmarks"):
        assert metrics[name]["cosine"] >= 0.99, metrics[name]
        assert metrics[name]["relative_error"] <= 0.05, metrics[name]  # cosine of pixel boxes forgives much
        assert metrics[name]["top1_agreement"] is None and metrics[name]["accuracy"] is None
    assert metrics["class_logits"]["accuracy"] is not None and metrics["class_logits"]["top1_agreement"] >= 0.9
    assert report["fidelity"]["passed"]
    # Per-output table and a result line in the summary.
    assert "boxes" in res.output and "regression" in res.output and "result:" in res.output


def test_roles_from_the_graph_alone() -> None:
    """Neutral names: the softmax head is the class output, the other [N, D] heads are regression."""
    built = build_multihead(output_names=("out0", "out1", "out2"), softmax_class=True)
    roles = [o.role.value for o in infer_output_roles(normalize(built.proto))]
    assert roles == ["class", "regression", "regression"]


def test_labels_refused_with_two_class_outputs(heads) -> None:
    res = _prune(heads, "--sparsity", "0.3", "--output-role", "boxes=class", out="two.onnx")
    assert res.exit_code == 2
    assert "class_logits" in res.output and "boxes" in res.output and "Traceback" not in res.output
    assert not (heads["dir"] / "two.onnx").exists()
    res = _prune(heads, "--sparsity", "0.3", "--label-output", "landmarks", out="two.onnx")
    assert res.exit_code == 2 and "not a class output" in res.output


def test_min_fidelity_exits_1_and_still_writes(heads) -> None:
    res = _prune(heads, "--sparsity", "0.5", "--min-fidelity", "0.9999", out="gate.onnx", steps="2")
    assert res.exit_code == 1, res.output
    assert (heads["dir"] / "gate.onnx").is_file() and (heads["dir"] / "gate.json").is_file()
    report = json.loads((heads["dir"] / "gate.json").read_text())
    assert report["fidelity"]["passed"] is False and report["fidelity"]["min_fidelity"] == 0.9999
    assert "FAIL" in res.output and "result: FAIL" in res.output
    onnx.checker.check_model(onnx.load(str(heads["dir"] / "gate.onnx")), full_check=True)


def test_eval_reports_every_output(heads, pruned) -> None:
    res = CliRunner().invoke(cli, ["eval", str(heads["model"]), str(heads["dir"] / "p.onnx"), "--data",
                                   str(heads["eval"]), "--no-latency", "--json", "--min-fidelity", "0.9"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    by = {o["name"]: o for o in result["eval"]["outputs"]}
    assert set(by) == {"class_logits", "boxes", "landmarks"}
    assert by["boxes"]["role"] == "regression" and by["boxes"]["top1_agreement"] is None
    assert by["class_logits"]["accuracy"] is not None and by["landmarks"]["accuracy"] is None
    assert result["fidelity"]["passed"]
    table = CliRunner().invoke(cli, ["eval", str(heads["model"]), str(heads["dir"] / "p.onnx"), "--data",
                                     str(heads["eval"]), "--no-latency"])
    assert all(name in table.output for name in by) and "result:" in table.output


class _Recognizer(torch.nn.Module):
    """Conv features over a text line -> per-column class scores [N, T, C] (CTC-shaped)."""

    def __init__(self, classes: int = 12) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Conv1d(32, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = self.body(x).mean(dim=2)  # [N, 32, T]
        return self.head(cols).transpose(1, 2).log_softmax(-1)  # [N, T, C]


def test_sequence_output_is_distilled_per_step_and_judged_by_decoding() -> None:
    torch.manual_seed(0)
    module = _Recognizer().eval()
    example = torch.randn(2, 1, 8, 24)
    proto = export(module, example, dynamo=False, opset=17)
    model = normalize(proto)
    (info,) = infer_output_roles(model)
    assert info.role.value == "sequence" and info.class_axis == 2
    x = np.random.default_rng(0).standard_normal((48, 1, 8, 24)).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    calib, held = data.split(0.25, seed=0)
    outcome = prune(model, calib, held, PruneOptions(
        mode="block", block=(8, 8, 1, 1), latency=False,
        search=SearchConfig(sparsity=0.3, steps=10, finetune_steps=10, batch_size=8)))
    (metrics,) = outcome.report.eval.outputs
    assert metrics.role == "sequence" and metrics.decode_agreement is not None
    assert metrics.top1_agreement is not None and metrics.fidelity == metrics.decode_agreement


def _teacher_run(heads, *, augment: bool, refit: bool) -> tuple[OnnxModel, Dataset, PruneOptions]:
    """The heads model, 32 of its labelled calibration samples, and two steps a phase at batch 8."""
    model = load_model(heads["model"])
    arrays = dict(np.load(heads["calib"]))
    labels = arrays.pop("label")
    data = dataset_from_arrays(arrays, model.inputs, labels=labels).take(32)
    options = PruneOptions(mode="block", latency=False, search=SearchConfig(
        sparsity=0.3, steps=2, finetune_steps=2, batch_size=8, augment=augment, refit=refit,
        time_budget=None))
    return model, data, options


def test_teacher_recomputed_per_batch_matches_the_cache(monkeypatch, heads) -> None:
    """Above the cache budget the teacher recomputed per batch (in onnxruntime) gives the same loss curve."""
    model, data, options = _teacher_run(heads, augment=False, refit=True)
    cached = prune(model, data, None, options).report.history
    monkeypatch.setattr(trainer_module, "TEACHER_CACHE_BYTES", 0)
    streamed = prune(model, data, None, options).report.history
    assert np.allclose(cached.loss, streamed.loss, rtol=1e-4)
    assert np.allclose(cached.finetune_loss, streamed.finetune_loss, rtol=1e-4)


def test_the_teacher_in_onnxruntime_gives_the_torch_copys_loss_curve(monkeypatch, heads) -> None:
    """prune's teacher runs in onnxruntime (outputs and inner features); the torch copy gives the same losses."""
    import smart_onnx.prune as prune_module

    model, data, options = _teacher_run(heads, augment=True, refit=False)  # augmented: recomputed every step
    calls: list[tuple[str, ...]] = []
    build = prune_module._dense_runner

    def counted(m):
        def runner(tensors):
            run = build(m)(tensors)
            assert run is not None
            calls.append(tuple(tensors))
            return run
        return runner

    monkeypatch.setattr(prune_module, "_dense_runner", counted)
    in_ort = prune(model, data, None, options).report
    assert len(calls) == 1 and calls[0] == tuple(in_ort.training.features) and calls[0]
    monkeypatch.setattr(prune_module, "_dense_runner", lambda m: lambda tensors: None)
    in_torch = prune(model, data, None, options).report
    assert np.allclose(in_ort.history.loss, in_torch.history.loss, rtol=1e-4)
    assert np.allclose(in_ort.history.finetune_loss, in_torch.history.finetune_loss, rtol=1e-4)
