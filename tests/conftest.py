"""Session fixtures: the generated zoo exported once per (architecture, exporter), and the real models."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import onnx
import pytest

from devkit.thirdparty import FetchError, RealModel, fashion_mnist, mnist_5k, real_model

if TYPE_CHECKING:
    from devkit.zoo import ZooModel

T = TypeVar("T")


@pytest.fixture(scope="session")
def zoo_export(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], ZooModel]:
    """``zoo_export(arch, exporter)``: exports on first use, then returns the cached model (also saved as a file)."""
    # Imported here, not at the top: a broken executor must not stop every other test module from loading.
    from devkit.zoo import ARCHITECTURES, EXPORTERS, ZooModel, export

    root = tmp_path_factory.mktemp("zoo")
    cache: dict[tuple[str, str], ZooModel] = {}

    def get(arch: str, exporter: str) -> ZooModel:
        key = (arch, exporter)
        if key not in cache:
            module, example = ARCHITECTURES[arch]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter deprecation and tracer warnings
                logging.disable(logging.WARNING)  # the dynamo exporter logs skipped torchvision ops
                try:
                    proto = export(module, example, **EXPORTERS[exporter])
                finally:
                    logging.disable(logging.NOTSET)
            path = root / f"{arch}-{exporter}.onnx"
            onnx.save_model(proto, path)
            cache[key] = ZooModel(arch, exporter, proto, path, {proto.graph.input[0].name: example.numpy()})
        return cache[key]

    return get


def _fetched(what: str, fetch: Callable[[], T]) -> T:
    try:
        return fetch()
    except FetchError as e:
        if os.environ.get("SMART_ONNX_OFFLINE") == "1":
            pytest.skip(f"SMART_ONNX_OFFLINE=1 and {what} is not available: {e}")
        raise


@pytest.fixture(scope="session")
def realmodels() -> Callable[[str], RealModel]:
    """``realmodels(name)``: a fetched third-party model; fails when fetching fails unless SMART_ONNX_OFFLINE=1."""
    return lambda name: _fetched(name, lambda: real_model(name))


@pytest.fixture(scope="session")
def realdata() -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """``realdata("mnist_5k" | "fashion_mnist")``: (uint8 images, int64 labels), with the same offline rule."""
    loaders = {"mnist_5k": mnist_5k, "fashion_mnist": lambda: fashion_mnist("test")}
    return lambda name: _fetched(name, loaders[name])
