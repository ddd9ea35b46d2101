"""The generated CRNN recognizer (devkit/crnn.py, the memory benchmark's model): conv stack + BiLSTM + Linear,
output [N, T, C]. The executor reproduces onnxruntime, every weight trains, and a short prune goes through."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from devkit.crnn import build, export, sample_images
from devkit.zoo import assert_weights_get_gradients
from smart_onnx.data import Dataset
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tests.helpers import assert_matches_ort


@pytest.fixture(scope="module")
def crnn() -> onnx.ModelProto:
    return export(build(classes=97, hidden=32), width=64)


def test_default_size_is_a_realistic_recognizer() -> None:
    params = sum(p.numel() for p in build().parameters())
    assert 2.5e6 < params < 3.0e6  # issue 13's recognizer held 2.7M weights


def test_matches_onnxruntime_and_trains(crnn: onnx.ModelProto) -> None:
    assert "LSTM" in {n.op_type for n in crnn.graph.node}
    feeds = {"image": sample_images(3, width=64)}
    assert_matches_ort(crnn, feeds)
    assert_weights_get_gradients(crnn, feeds)


@pytest.mark.slow
def test_short_prune(crnn: onnx.ModelProto) -> None:
    """Convs and the classifier are pruned; the LSTM's fine-tuned weights go back into the graph and verify."""
    model = normalize(crnn)
    calib, holdout = Dataset({"image": sample_images(12, width=64)}), Dataset({"image": sample_images(4, 64, 1)})
    options = PruneOptions(mode="block", search=SearchConfig(sparsity=0.3, steps=2, finetune_steps=2, batch_size=4),
                           latency=False)
    outcome = prune(model, calib, holdout, options)
    assert outcome.report.export_relative_error <= 1e-4
    assert outcome.report.sparsity.achieved_params >= 0.3 - 1e-9
    before = {t.name: onnx.numpy_helper.to_array(t) for t in crnn.graph.initializer}
    lstm = next(n for n in outcome.model.graph.node if n.op_type == "LSTM")
    after = {t.name: onnx.numpy_helper.to_array(t) for t in outcome.model.graph.initializer}
    assert not np.array_equal(before[lstm.input[1]], after[lstm.input[1]])  # fine-tuned, not frozen
