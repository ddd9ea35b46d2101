"""The evaluation measures unknown value shapes with onnxruntime, not onnx's reference evaluator."""

from __future__ import annotations

import pytest

from smart_onnx.errors import GraphError
from smart_onnx.eval import compare as compare_mod
from smart_onnx.eval.shapes import ort_shape_measure, ort_value_shapes
from smart_onnx.graph import GraphView, analyze, measured_shapes
from smart_onnx.graph import analysis as analysis_mod
from smart_onnx.model import normalize, resolve_input_shapes


# The zoo models whose analysis needs measured shapes (shape inference leaves some unknown).
@pytest.mark.parametrize("arch", ["vit_block", "yolo_like"])
def test_onnxruntime_measures_what_the_reference_evaluator_measures(zoo_export, arch: str) -> None:
    model = normalize(zoo_export(arch, "legacy17").proto)
    inputs = resolve_input_shapes(model, None)
    names = [o for node in GraphView(model).nodes for o in node.output if o]
    assert ort_value_shapes(model, inputs, names) == measured_shapes(model, inputs, names)
    assert analyze(model, measure_shapes=ort_shape_measure(model)) == analyze(model)


def test_a_model_onnxruntime_cannot_run_is_a_graph_error(zoo_export) -> None:
    model = normalize(zoo_export("vit_block", "legacy17").proto)
    wrong = {spec.name: (1, 7) for spec in model.inputs}  # a rank onnxruntime rejects
    with pytest.raises(GraphError, match="onnxruntime cannot measure"):
        ort_value_shapes(model, wrong, [model.graph.node[0].output[0]])


def test_compare_layers_does_not_run_the_reference_evaluator(zoo_export, monkeypatch) -> None:
    model = normalize(zoo_export("vit_block", "legacy17").proto)
    layers = len(analyze(model).layers)
    monkeypatch.setattr(analysis_mod, "measured_shapes", lambda *a: pytest.fail("the reference evaluator ran"))
    rows = compare_mod.compare_layers(model, model, resolve_input_shapes(model, None))
    assert len(rows) == layers > 0
