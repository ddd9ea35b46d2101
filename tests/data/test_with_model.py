"""Data loaded for a saved ONNX model's inputs feeds onnxruntime as is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from PIL import Image

from smart_onnx.data import load_dataset, write_npz
from smart_onnx.model import OnnxModel, load_model, save_model
from tests.helpers import run_ort

OPSET = [helper.make_opsetid("", 17)]


def _value(name: str, elem: int, shape: list | None) -> object:
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.fixture
def model(tmp_path: Path) -> OnnxModel:
    """pixels [batch, 3, 6, 8] float, ids [batch, seq] int64 -> Relu(pixels), Identity(ids)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["pixels"], ["y"]), helper.make_node("Identity", ["ids"], ["z"])],
        "g",
        [_value("pixels", TensorProto.FLOAT, ["batch", 3, 6, 8]), _value("ids", TensorProto.INT64, ["batch", "seq"])],
        [_value("y", TensorProto.FLOAT, None), _value("z", TensorProto.INT64, None)],
    )
    proto = helper.make_model(graph, opset_imports=OPSET)
    return load_model(save_model(proto, tmp_path / "model.onnx"))


def test_npz_for_a_loaded_model_runs_in_onnxruntime(tmp_path: Path, model: OnnxModel) -> None:
    rng = np.random.default_rng(0)
    pixels, ids = rng.standard_normal((5, 3, 6, 8)), rng.integers(0, 9, (5, 4)).astype(np.float64)
    write_npz(tmp_path / "calib" / "a.npz", {"pixels": pixels, "ids": ids}, labels=np.arange(5) % 2)
    data = load_dataset(tmp_path / "calib", model.inputs)
    for batch in data.batches(2):
        y, z = run_ort(model.proto, batch.inputs)
        np.testing.assert_allclose(y, np.maximum(batch.inputs["pixels"], 0))
        np.testing.assert_array_equal(z, batch.inputs["ids"])
    assert data.labels is not None and data.labels.tolist() == [0, 1, 0, 1, 0]


def test_images_for_a_single_input_model(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["img"], ["y"])],
        "g",
        [_value("img", TensorProto.FLOAT, ["N", "H", "W", 3])],
        [_value("y", TensorProto.FLOAT, None)],
    )
    model = load_model(save_model(helper.make_model(graph, opset_imports=OPSET), tmp_path / "m.onnx"))
    (tmp_path / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (10, 10), (i * 100, 0, 0)).save(tmp_path / "images" / f"{i}.png")
    data = load_dataset(tmp_path / "images", model.inputs, image_size=(4, 5), mean=[0.5], std=[0.5])
    (y,) = run_ort(model.proto, data.arrays)
    assert y.shape == (3, 4, 5, 3)
    np.testing.assert_allclose(y[:, 0, 0, 0], np.maximum([-1.0, 200 / 255 - 1, 400 / 255 - 1], 0), atol=1e-6)
