"""The oracles the fuzzer relies on must themselves catch a wrong model.

``prune`` verifies the rewritten model against the masked original in onnxruntime; a rewritten model
that outputs NaN (or differs by any amount hidden behind a NaN) must fail that check,
else the fuzzer's "prune already checks this" is hollow.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from devkit.zoo import with_symbolic_batch
from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.eval.ort import make_session
from smart_onnx.eval.verify import RewriteCheck, check_rewrite
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from smart_onnx.prune import _masked_outputs, _verify_feeds
from tests.helpers import make_model, relative_error


def _matmul(w: np.ndarray):
    proto = make_model(helper.make_node("MatMul", ["x", "w"], ["y"]), {"x": np.zeros((1, 4), np.float32)}, ["y"],
                       {"w": w})
    return normalize(with_symbolic_batch(proto))


def _verify_export(w: np.ndarray, rewritten: np.ndarray, data) -> RewriteCheck:
    """prune()'s export check: the masked original (here unmasked) through the executor and onnxruntime, then
    the rewritten model's session against it."""
    feeds = _verify_feeds(data)
    masked = _masked_outputs(Executor(_matmul(w)), {}, {}, _matmul(w), feeds)
    return check_rewrite(masked.reference, make_session(_matmul(rewritten)), feeds, masked.executor, masked.float64)


@pytest.fixture
def original():
    w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    data = dataset_from_arrays({"x": np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)},
                               _matmul(w).inputs)
    return w, data


def test_verify_export_rejects_a_different_model(original) -> None:
    w, data = original
    with pytest.raises(RewriteError, match="nothing was written"):
        _verify_export(w, w * 1.01, data)


def test_verify_export_accepts_the_same_model(original) -> None:
    w, data = original
    assert _verify_export(w, w.copy(), data).error < 1e-6


def test_verify_export_rejects_nan_outputs(original) -> None:
    w, data = original
    bad = w.copy()
    bad[:, 1] = np.nan  # output column 1 is NaN for every sample
    with pytest.raises(RewriteError):
        _verify_export(w, bad, data)


def test_prune_does_not_empty_every_layer() -> None:
    from devkit.zoo import export, mlp_gemm
    from smart_onnx.prune import PruneOptions, prune
    from smart_onnx.search import SearchConfig

    model = normalize(export(*mlp_gemm(), dynamo=False, opset=17))  # Gemm 64->32->10: one 100x100 block each
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    options = PruneOptions(mode="block", block=(100, 100), latency=False,
                           search=SearchConfig(sparsity=0.5, steps=2, finetune_steps=1, batch_size=4))
    try:
        outcome = prune(model, data, None, options)
    except ConstraintError:
        return  # refusing is fine
    assert outcome.report.sparsity.achieved_params < 1.0


def test_fuzzer_relative_error_flags_nan() -> None:
    """The fuzzer's own comparison (``not err <= rtol``) does see NaN."""
    err = relative_error(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert not err <= 1e-5
