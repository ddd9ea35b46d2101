"""Reference runs of a model: onnxruntime (no graph optimisation) and the executor, and their closeness."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort
import torch

from smart_onnx.executor import Executor
from smart_onnx.model import OnnxModel, normalize

__all__ = ["relative_error", "run_executor", "run_ort"]


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` in onnxruntime on the CPU, graph optimisations off."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(feeds))


def run_executor(model: onnx.ModelProto | OnnxModel, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of ``model`` in the executor (a copy of a proto is normalised; the proto is left as it was)."""
    om = model if isinstance(model, OnnxModel) else normalize(_copy(model))
    ex = Executor(om)
    with torch.no_grad():
        out = ex({k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()})
    return [v.detach().cpu().numpy() for v in out.values()]


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / max |e| (0 when both are all zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    return diff / scale if scale > 0 else diff
