"""Both rewrite modes on the generated zoo (torch exports in real exporters' styles).

Channel mode: analysis -> random keep-sets -> rewrite; onnxruntime on the rewritten
model equals the Executor on the original with the removed channels zeroed.
Block mode: random block masks on every prunable weight; onnxruntime on the rewritten
model equals onnxruntime on the original with the same blocks zeroed by numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from devkit.zoo import ARCHITECTURES, to_constant_nodes, with_symbolic_batch
from smart_onnx.graph import analyze
from smart_onnx.model import OnnxModel, normalize
from smart_onnx.rewrite import apply_block_masks, apply_channel_masks, read_block_sparsity
from tests.helpers import relative_error, run_ort
from tests.rewrite import masked_executor_outputs, random_block_masks, random_keep, zeroed_reference

STYLES = {"plain": lambda m: m, "symbolic_batch": with_symbolic_batch, "constant_nodes": to_constant_nodes}
CASES = [
    *[(arch, "legacy17", "plain", removed) for arch in ARCHITECTURES for removed in (0.25, 0.5, 0.75)],
    *[(arch, "legacy13", style, 0.5) for arch in ARCHITECTURES for style in STYLES],
    # The dynamo exporter costs about a second per model.
    *[pytest.param(arch, "dynamo", "plain", 0.5, marks=pytest.mark.slow) for arch in ARCHITECTURES],
]


def _load(zoo_export, arch: str, exporter: str, style: str) -> tuple[OnnxModel, dict[str, np.ndarray]]:
    zm = zoo_export(arch, exporter)
    proto = onnx.ModelProto()
    proto.CopyFrom(STYLES[style](zm.proto))
    return normalize(proto), zm.feeds


@pytest.mark.parametrize(("arch", "exporter", "style", "removed"), CASES)
def test_channel_removal_on_zoo(zoo_export, arch: str, exporter: str, style: str, removed: float) -> None:
    model, feeds = _load(zoo_export, arch, exporter, style)
    analysis = analyze(model, {k: v.shape for k, v in feeds.items()})
    assert analysis.prunable_groups
    keep = {g.id: random_keep(g.channels, removed, seed=g.id) for g in analysis.prunable_groups}
    out = apply_channel_masks(model, analysis, keep)
    assert out.num_weights() < model.num_weights()
    assert [n.name for n in out.graph.node] == [n.name for n in model.graph.node]
    assert [(o.domain, o.version) for o in out.proto.opset_import] == [
        (o.domain, o.version) for o in model.proto.opset_import
    ]
    expected = masked_executor_outputs(model, analysis.groups, keep, feeds, analysis)
    for a, e in zip(run_ort(out.proto, feeds), expected, strict=True):
        assert a.shape == e.shape
        assert relative_error(a, e) <= 1e-4


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_block_masks_on_zoo(zoo_export, arch: str, sparsity: float) -> None:
    model, feeds = _load(zoo_export, arch, "legacy17", "plain")
    masks = random_block_masks(analyze(model, {k: v.shape for k, v in feeds.items()}).layers, sparsity)
    out = apply_block_masks(model, masks, sparse_format="coo" if sparsity > 0.7 else "dense")
    expected = run_ort(zeroed_reference(model, masks), feeds)
    for a, e in zip(run_ort(out.proto, feeds), expected, strict=True):
        assert np.max(np.abs(a - e)) <= 1e-6 * max(1.0, float(np.max(np.abs(e))))
    assert set(read_block_sparsity(out.proto)) == set(masks)
