"""Small classifier models and data for the eval tests (Conv -> Relu -> Flatten -> Gemm, 5 classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from tests.helpers import make_model

CLASSES = 5


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "conv_b": rng.standard_normal(4).astype(np.float32),
        "fc_w": rng.standard_normal((CLASSES, 64)).astype(np.float32),
        "fc_b": np.zeros(CLASSES, np.float32),
    }


def classifier(w: dict[str, np.ndarray], input_name: str = "x") -> onnx.ModelProto:
    """``input_name`` [N, 1, 6, 6] -> logits [N, 5]; batch dim symbolic."""
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w", "conv_b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    model = make_model(nodes, {input_name: np.zeros((1, 1, 6, 6), np.float32)}, ["logits"], w)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    # A typed output: the rewriter runs onnx's full checker, which wants every output typed.
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", CLASSES]))
    return model


def write_files(d: Path, samples: int = 48) -> dict[str, Path]:
    """reference, a half-zeroed candidate, a scrambled candidate, a renamed-input model, data with labels."""
    w = weights()
    half = dict(w, fc_w=np.where(np.arange(64) % 2 == 0, w["fc_w"], 0).astype(np.float32))
    scrambled = dict(w, fc_w=w["fc_w"][::-1].copy())  # classes permuted: agreement collapses
    paths = {"ref": d / "ref.onnx", "half": d / "half.onnx", "scrambled": d / "scrambled.onnx",
             "renamed": d / "renamed.onnx", "data": d / "data.npz", "bad_data": d / "bad.npz"}
    onnx.save(classifier(w), str(paths["ref"]))
    onnx.save(classifier(half), str(paths["half"]))
    onnx.save(classifier(scrambled), str(paths["scrambled"]))
    onnx.save(classifier(w, input_name="image"), str(paths["renamed"]))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((samples, 1, 6, 6)).astype(np.float32)
    np.savez(paths["data"], x=x, label=rng.integers(0, CLASSES, samples))
    np.savez(paths["bad_data"], x=rng.standard_normal((samples, 1, 5, 5)).astype(np.float32))
    return paths
