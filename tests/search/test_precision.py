"""Mixed precision: the autocast dtype per device, and masks that agree with fp32 (CPU autocast; CUDA where present)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from devkit.zoo import export, resnet_like
from smart_onnx.data import dataset_from_arrays
from smart_onnx.model import normalize, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig, precision
from tests.helpers import mask_overlap

SEARCH = SearchConfig(sparsity=0.5, steps=30, finetune_steps=10, batch_size=16, time_budget=None)


def test_autocast_only_on_cuda_and_bf16_where_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    assert precision.autocast_dtype("cpu", "auto") is None
    assert precision.autocast_dtype("cuda", "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.autocast_dtype("cuda:1", "auto") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.autocast_dtype("cuda", "auto") == torch.float16
    assert precision.Precision("cpu").scaler is None


@pytest.fixture(scope="module")
def model_and_data():
    module, example = resnet_like()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((64, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    return model, data


def _prune(model_and_data, device: str = "cpu"):
    model, data = model_and_data
    options = PruneOptions(mode="block", block=(4, 4, 1, 1), search=replace(SEARCH, device=device), latency=False)
    return prune(model, data, None, options)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16-scaled"])
def test_autocast_search_finds_the_fp32_mask(model_and_data, monkeypatch: pytest.MonkeyPatch, tmp_path,
                                             dtype) -> None:
    # The CUDA code path, run on the CPU: autocast to `dtype` (fp16 with the GradScaler), scores and masks fp32.
    reference = _prune(model_and_data)
    monkeypatch.setattr(precision, "autocast_dtype", lambda device, _: dtype)
    mixed = _prune(model_and_data)
    assert mixed.report.sparsity.achieved_params == reference.report.sparsity.achieved_params
    assert (overlap := mask_overlap(reference.model.proto, mixed.model.proto)) >= 0.95, overlap
    assert all(np.isfinite(mixed.report.history.loss))
    save_model(mixed.model, tmp_path / "m.onnx")  # written as fp32 weights, checked by save_model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_finds_the_cpu_mask(model_and_data) -> None:
    cpu, cuda = _prune(model_and_data), _prune(model_and_data, "cuda")
    assert cuda.report.sparsity.achieved_params == cpu.report.sparsity.achieved_params
    assert (overlap := mask_overlap(cpu.model.proto, cuda.model.proto)) >= 0.95, overlap
