"""Training batches read ahead by DataLoader workers: the same run as reading them in the training process."""

from __future__ import annotations

import numpy as np

from devkit.zoo import export, mlp_gemm
from smart_onnx.data import dataset_from_arrays
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig


def test_workers_change_nothing_but_who_reads() -> None:
    module, example = mlp_gemm()
    model = normalize(export(module, example, dynamo=False, opset=17))
    x = np.random.default_rng(0).standard_normal((40, *example.shape[1:])).astype(np.float32)
    data = dataset_from_arrays({model.inputs[0].name: x}, model.inputs)
    runs = []
    for workers in (0, 2):
        search = SearchConfig(sparsity=0.5, steps=6, finetune_steps=4, batch_size=8, workers=workers, time_budget=None)
        runs.append(prune(model, data, None, PruneOptions(search=search, latency=False)).report)
    assert runs[0].history.loss == runs[1].history.loss
    assert runs[0].history.finetune_loss == runs[1].history.finetune_loss
