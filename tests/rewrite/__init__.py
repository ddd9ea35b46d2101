"""Rewriter tests. Shared builders: models whose outputs are typed, so the originals pass the full checker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from smart_onnx.model import OnnxModel, normalize
from tests.helpers import make_model


def typed_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> OnnxModel:
    """A normalised model like ``tests.helpers.make_model`` builds, with output types from shape inference."""
    proto = make_model(nodes, inputs, outputs, initializers, opset)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    known = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
    for out in proto.graph.output:
        out.CopyFrom(known[out.name])
    onnx.checker.check_model(proto, full_check=True)
    return normalize(proto)


def random_feeds(model: OnnxModel, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 feeds for every (static-shaped) input."""
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in model.inputs}
