"""Shapes of values static inference leaves unknown, measured with one onnxruntime run on zeros.

The analysis (``smart_onnx.graph.analyze``) measures such shapes when they matter (a layer's
MACs, a channel rule's decision). Without a measure it falls back to onnx's reference
evaluator, which runs the model in numpy op by op: seconds on a BERT-size model, where one
onnxruntime run takes a fraction of that. ``graph`` may import neither torch nor onnxruntime,
so the evaluation passes this measure in (``analyze(..., measure_shapes=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnxruntime as ort
from onnx import helper

from smart_onnx.errors import GraphError, SmartOnnxError
from smart_onnx.eval.ort import make_session
from smart_onnx.model import OnnxModel, copy_proto

__all__ = ["ort_shape_measure", "ort_value_shapes"]


def ort_value_shapes(
    model: OnnxModel, input_shapes: Mapping[str, tuple[int, ...]], names: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """Shapes of the values ``names`` when ``model`` runs on zeros of ``input_shapes``.

    Raises:
        GraphError: onnxruntime cannot build or run the model with those values as outputs
            (the analysis then falls back to onnx's reference evaluator).
    """
    proto = copy_proto(model.proto)
    known = {o.name for o in proto.graph.output}
    proto.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in dict.fromkeys(names)
                              if n and n not in known)
    feeds = {spec.name: np.zeros(input_shapes[spec.name], dtype=spec.dtype)
             for spec in model.inputs if spec.name in input_shapes}
    try:
        session = make_session(proto)
        outputs = [o.name for o in session.get_outputs()]
        values = session.run(outputs, feeds)
    except (SmartOnnxError, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidArgument, RuntimeError) as e:
        raise GraphError(f"onnxruntime cannot measure the value shapes: {str(e).strip().splitlines()[0][:200]}") from e
    wanted = set(names)
    return {n: tuple(int(d) for d in np.shape(v)) for n, v in zip(outputs, values) if n in wanted}


def ort_shape_measure(
    model: OnnxModel,
) -> Callable[[Mapping[str, tuple[int, ...]], Sequence[str]], dict[str, tuple[int, ...]]]:
    """``model``'s :func:`ort_value_shapes`, in the form ``analyze(..., measure_shapes=...)`` takes."""
    return lambda input_shapes, names: ort_value_shapes(model, input_shapes, names)
