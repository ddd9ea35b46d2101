"""The executor on the generated zoo: every architecture x exporter x exporter style.

Equivalence: executor output == onnxruntime (relative error <= 1e-5, float32, batch 2).
Gradients: every trainable weight receives a gradient from the sum of the outputs.
The transform self-checks run onnxruntime only, so they hold even where an op is missing.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import onnx
import pytest

from devkit.zoo import (
    ARCHITECTURES,
    EXPORTERS,
    ZooModel,
    assert_weights_get_gradients,
    to_constant_nodes,
    with_symbolic_batch,
    wrap_in_if,
)
from tests.helpers import assert_matches_ort, relative_error, run_ort

STYLES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "plain": lambda m: m,
    "constant_nodes": to_constant_nodes,
    "if_wrapped": wrap_in_if,
    "symbolic_batch": with_symbolic_batch,
}
# The dynamo exporter costs ~1 s per model and opset 20 adds little over 17: both run with -m slow.
_SLOW_EXPORTERS = {"dynamo", "legacy20"}
CASES = [
    pytest.param(arch, exporter, style, id=f"{arch}-{exporter}-{style}",
                 marks=[pytest.mark.slow] if exporter in _SLOW_EXPORTERS else [])
    for arch in ARCHITECTURES
    for exporter in EXPORTERS
    for style in STYLES
]  # fmt: skip


def _styled(zoo_export: Callable[[str, str], ZooModel], arch: str, exporter: str, style: str) -> ZooModel:
    zm = zoo_export(arch, exporter)
    return ZooModel(zm.arch, zm.exporter, STYLES[style](zm.proto), zm.path, zm.feeds)


@pytest.mark.parametrize(("arch", "exporter", "style"), CASES)
def test_executor_matches_onnxruntime(zoo_export, arch: str, exporter: str, style: str) -> None:
    zm = _styled(zoo_export, arch, exporter, style)
    assert_matches_ort(zm.proto, zm.feeds, rtol=1e-5)


@pytest.mark.parametrize(("arch", "exporter", "style"), CASES)
def test_every_parameter_gets_a_gradient(zoo_export, arch: str, exporter: str, style: str) -> None:
    zm = _styled(zoo_export, arch, exporter, style)
    assert_weights_get_gradients(zm.proto, zm.feeds)


@pytest.mark.parametrize("exporter", sorted(set(EXPORTERS) - _SLOW_EXPORTERS))
@pytest.mark.parametrize("style", sorted(set(STYLES) - {"plain"}))
def test_styles_preserve_onnxruntime_output(zoo_export, exporter: str, style: str) -> None:
    zm = zoo_export("yolo_like", exporter)
    expected = run_ort(zm.proto, zm.feeds)
    actual = run_ort(STYLES[style](zm.proto), zm.feeds)
    assert relative_error(actual[0], expected[0]) <= 1e-6


def test_wrap_in_if_runs_the_then_branch(zoo_export) -> None:
    zm = zoo_export("resnet_like", "legacy17")
    wrapped = wrap_in_if(zm.proto)
    ifs = [n for n in wrapped.graph.node if n.op_type == "If"]
    assert len(ifs) == 1 and ifs[0].attribute
    cond = next(n for n in wrapped.graph.node if n.output[0] == ifs[0].input[0])
    cond.attribute[0].t.int32_data[:] = [0]  # take the else branch: it must give a different answer
    expected = run_ort(zm.proto, zm.feeds)[0]
    assert relative_error(run_ort(wrapped, zm.feeds)[0], expected) > 1e-2


def test_constant_nodes_replace_every_initializer(zoo_export) -> None:
    zm = zoo_export("mobilenetv2_like", "legacy17")
    converted = to_constant_nodes(zm.proto)
    assert not converted.graph.initializer
    consts = sum(n.op_type == "Constant" for n in converted.graph.node)
    assert consts == len(zm.proto.graph.initializer) + sum(n.op_type == "Constant" for n in zm.proto.graph.node)


@pytest.mark.parametrize("exporter", sorted(set(EXPORTERS) - _SLOW_EXPORTERS))
def test_zoo_keeps_batchnorm_in_the_graph(zoo_export, exporter: str) -> None:
    # The legacy exporter folds a BN that directly follows a Conv; the zoo must still exercise BN.
    ops = collections.Counter(n.op_type for n in zoo_export("resnet_like", exporter).proto.graph.node)
    assert ops["BatchNormalization"] >= 1 and ops["Add"] >= 2
