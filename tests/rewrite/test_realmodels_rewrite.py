"""Both rewrite modes on the real third-party models (run with ``pytest -m realmodels``).

Channel mode at 50% of every prunable group's channels; block mode at 80% of the
blocks of every prunable weight (so ``auto`` picks COO for most tensors).
"""

from __future__ import annotations

import pytest

from devkit.thirdparty import REAL_MODELS
from smart_onnx.eval import weight_counts
from smart_onnx.graph import analyze
from smart_onnx.model import load_model
from smart_onnx.rewrite import apply_block_masks, apply_channel_masks
from tests.helpers import relative_error, run_ort
from tests.rewrite import masked_executor_outputs, random_block_masks, random_keep, zeroed_reference

# slow too: the default run (-m "not slow") must stay fast; `pytest -m realmodels` still selects them.
pytestmark = [pytest.mark.realmodels, pytest.mark.slow]


@pytest.mark.parametrize("name", REAL_MODELS)
def test_channel_removal_on_real_model(realmodels, name: str) -> None:
    real = realmodels(name)
    model, feeds = load_model(real.path), real.feeds(batch=2)
    analysis = analyze(model, {k: v.shape for k, v in feeds.items()})
    keep = {g.id: random_keep(g.channels, 0.5, seed=g.id) for g in analysis.prunable_groups}
    out = apply_channel_masks(model, analysis, keep)
    assert out.num_weights() < model.num_weights()
    expected = masked_executor_outputs(model, analysis.groups, keep, feeds, analysis)
    for a, e in zip(run_ort(out.proto, feeds), expected, strict=True):
        assert relative_error(a, e) <= 1e-4


@pytest.mark.parametrize("name", REAL_MODELS)
def test_block_masks_on_real_model(realmodels, name: str) -> None:
    real = realmodels(name)
    model, feeds = load_model(real.path), real.feeds(batch=2)
    masks = random_block_masks(analyze(model, {k: v.shape for k, v in feeds.items()}).layers, 0.8)
    out = apply_block_masks(model, masks)
    # Dense storage is the default (what compilers read): the file keeps its size, the zeros are what shrink.
    assert weight_counts(out).nonzero < weight_counts(model).nonzero
    for a, e in zip(run_ort(out.proto, feeds), run_ort(zeroed_reference(model, masks), feeds), strict=True):
        assert relative_error(a, e) <= 1e-6
