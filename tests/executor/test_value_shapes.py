"""Executor.value_shapes measures what onnx's reference evaluator measures, for the analysis."""

from __future__ import annotations

import pytest

from smart_onnx.executor import Executor
from smart_onnx.graph import GraphView, analyze, measured_shapes
from smart_onnx.model import normalize, resolve_input_shapes


# The zoo models whose analysis needs measured shapes (shape inference leaves some unknown).
@pytest.mark.parametrize("arch", ["vit_block", "yolo_like"])
def test_value_shapes_match_the_reference_evaluator_and_give_the_same_analysis(zoo_export, arch: str) -> None:
    model = normalize(zoo_export(arch, "legacy17").proto)
    inputs = resolve_input_shapes(model, None)
    names = [o for node in GraphView(model).nodes for o in node.output if o]
    executor = Executor(model)
    assert executor.value_shapes(inputs, names) == measured_shapes(model, inputs, names)
    with_executor = analyze(model, measure_shapes=executor.value_shapes)
    assert with_executor == analyze(model)
    assert set(with_executor.shapes) > set(analyze(model, measure=False).shapes)
