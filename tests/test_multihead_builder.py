"""The three-head test model (tests/multihead.py) is real: it runs in onnxruntime, matches torch, and its heads work.

The per-output fidelity tests lean on it, so a regression here (a broken export, a head that learned nothing)
must show up as its own failure, not as a puzzling pruning result.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.helpers import run_ort
from tests.multihead import box_targets, build_multihead, landmark_targets


@pytest.fixture(scope="module")
def model():
    return build_multihead()


def test_exported_model_is_valid_and_dynamic(model) -> None:
    onnx.checker.check_model(model.proto, full_check=True)
    assert model.proto.ir_version <= 10
    assert [o.name for o in model.proto.graph.output] == ["class_logits", "boxes", "landmarks"]
    batch = model.proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    # Enough prunable weights for 16x8 blocks: at least three Conv/Gemm weights with both dims multiples of 16.
    weights = [t for t in model.proto.graph.initializer if len(t.dims) >= 2]
    assert sum(t.dims[0] % 16 == 0 and t.dims[1] % 16 == 0 for t in weights) >= 3


def test_onnxruntime_matches_torch_and_heads_work(model) -> None:
    logits, boxes, marks = run_ort(model.proto, {"input": model.eval["input"]})
    assert logits.shape == (2000, 10) and boxes.shape == (2000, 4) and marks.shape == (2000, 10)
    accuracy = float((logits.argmax(1) == model.eval["label"]).mean())
    boxes_mae = float(np.abs(boxes - model.eval_targets["boxes"]).mean())
    marks_mae = float(np.abs(marks - model.eval_targets["landmarks"]).mean())
    # quality was measured with the torch twin of the exported graph.
    assert accuracy == pytest.approx(model.quality["accuracy"], abs=1e-3)
    assert boxes_mae == pytest.approx(model.quality["boxes_mae"], abs=1e-3)
    assert marks_mae == pytest.approx(model.quality["landmarks_mae"], abs=1e-3)
    assert accuracy > 0.70
    assert boxes_mae < 3.0
    # Better than always predicting the training means, which is what an untrained regressor would learn.
    assert boxes_mae < 0.5 * np.abs(model.eval_targets["boxes"] - model.calib_targets["boxes"].mean(0)).mean()
    assert marks_mae < 0.5 * np.abs(model.eval_targets["landmarks"] - model.calib_targets["landmarks"].mean(0)).mean()


def test_neutral_names_softmax_and_save(tmp_path, model) -> None:
    probs_model = build_multihead(("out0", "out1", "out2"), softmax_class=True)
    assert [o.name for o in probs_model.proto.graph.output] == ["out0", "out1", "out2"]
    assert any(n.op_type == "Softmax" for n in probs_model.proto.graph.node)
    x = model.eval["input"][:64]
    probs, boxes, _ = run_ort(probs_model.proto, {"input": x})
    logits, ref_boxes, _ = run_ort(model.proto, {"input": x})
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert (probs.argmax(1) == logits.argmax(1)).all()  # same trained weights
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-5, atol=1e-4)

    path, calib, evaluation = probs_model.save(tmp_path)
    assert onnx.load(path).graph.output[0].name == "out0"
    with np.load(calib) as c, np.load(evaluation) as e:
        assert sorted(c.files) == sorted(e.files) == ["input", "label"]
        assert c["input"].shape == (1000, 1, 28, 28) and e["label"].shape == (2000,)


def test_targets_on_a_drawn_rectangle() -> None:
    # A bright 4x6 rectangle at rows 10..13, columns 5..10 on a black (normalised) background.
    img = np.zeros((1, 28, 28))
    img[0, 10:14, 5:11] = 1.0
    x = ((img - 0.2860) / 0.3530)[:, None].astype(np.float32)
    np.testing.assert_allclose(box_targets(x), [[5, 10, 10, 13]])
    marks = landmark_targets(x)[0]
    np.testing.assert_allclose(marks[:2], [7.5, 11.5], atol=1e-5)  # whole-image centroid
    np.testing.assert_allclose(marks[2:4], [7.5, 11.5], atol=1e-5)  # top-left quadrant holds it all
    np.testing.assert_allclose(marks[4:6], [20.5, 6.5], atol=1e-5)  # empty top-right: its centre
