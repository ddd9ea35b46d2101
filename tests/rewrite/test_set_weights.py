"""set_weights: trained values replace initializers; shape and dtype are kept."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from smart_onnx.errors import RewriteError
from smart_onnx.rewrite.set_weights import set_weights
from tests.helpers import run_ort
from tests.rewrite import random_feeds, typed_model


def _model():
    return typed_model([helper.make_node("Gemm", ["x", "W", "B"], ["y"], name="fc", transB=1)],
                       {"x": np.zeros((2, 4), np.float32)}, ["y"],
                       {"W": np.ones((3, 4), np.float32), "B": np.zeros(3, np.float32)})


def test_new_values_are_used_and_cast() -> None:
    model = _model()
    w = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = set_weights(model, {"W": w})
    assert out.weight("W").dtype == np.float32
    np.testing.assert_array_equal(out.weight("W"), w.astype(np.float32))
    np.testing.assert_array_equal(model.weight("W"), np.ones((3, 4)))
    feeds = random_feeds(model)
    np.testing.assert_allclose(run_ort(out.proto, feeds)[0], feeds["x"] @ w.T, rtol=1e-5)


@pytest.mark.parametrize(("arrays", "match"), [
    ({"nope": np.ones(3)}, "no initializer"),
    ({"W": np.ones((4, 3))}, "shape"),
])
def test_bad_weights_are_refused(arrays, match: str) -> None:
    with pytest.raises(RewriteError, match=match):
        set_weights(_model(), arrays)
