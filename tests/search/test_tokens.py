"""Token inputs: their embedding tables are never trained, and their ids are augmented (graph/tables.py,
data/augment.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from onnx import numpy_helper

from smart_onnx.data import Dataset
from smart_onnx.data.augment import Augmenter, TokenAugmenter, augmented_views
from smart_onnx.graph.tables import lookup_tables, token_inputs
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from smart_onnx.search.search import REFIT_VIEWS
from tests.transformers import encoder, token_batch


def _initializers(model) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_the_token_table_is_a_lookup_table_and_the_layers_are_not() -> None:
    model = encoder()
    tables = lookup_tables(model)
    arrays = _initializers(model)
    assert len(tables) == 1
    (name,) = tables
    assert arrays[name].shape == (50, 32)  # [vocab, width], gathered by input_ids
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] == name]
    assert gathers and gathers[0].input[1] == "input_ids"


def test_prune_keeps_the_token_table_and_trains_the_rest() -> None:
    model = encoder()
    before = _initializers(model)
    (table,) = lookup_tables(model)
    data = Dataset({"input_ids": token_batch(24, seed=1)})
    config = SearchConfig(sparsity=0.5, steps=4, finetune_steps=4, batch_size=8, refit=False, time_budget=None)
    outcome = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), search=config, latency=False))
    after = _initializers(outcome.model.proto)
    np.testing.assert_array_equal(after[table], before[table])
    # Unpruned trained tensors (LayerNorm scales) still moved: only the table was held fixed.
    moved = [n for n, a in before.items() if n != table and a.ndim == 1 and a.size > 1 and n in after
             and not np.array_equal(after[n], a)]
    assert moved


def test_token_inputs_name_the_ids_and_their_table_rows() -> None:
    model = encoder()
    assert token_inputs(model) == {"input_ids": 50}


def test_token_augmenter_replaces_about_its_rate_of_ids_within_the_table_reproducibly() -> None:
    ids = torch.full((64, 16), 7, dtype=torch.int64)
    mask = torch.ones(64, 16, dtype=torch.int64)
    a, b = TokenAugmenter({"ids": 50}, seed=3, rate=0.25), TokenAugmenter({"ids": 50}, seed=3, rate=0.25)
    out_a, out_b = a({"ids": ids, "mask": mask}), b({"ids": ids, "mask": mask})
    assert torch.equal(out_a["ids"], out_b["ids"]) and torch.equal(out_a["mask"], mask)
    changed = (out_a["ids"] != ids).float().mean()
    assert 0.18 < changed < 0.3  # a replacement may draw the same id (1 in 50)
    assert out_a["ids"].dtype == torch.int64 and 0 <= out_a["ids"].min() and out_a["ids"].max() < 50
    assert not torch.equal(a({"ids": ids})["ids"], out_a["ids"])  # the stream goes on
    assert not TokenAugmenter({}, seed=0).active and not TokenAugmenter({"ids": 50}, rate=0.0).active


def test_augmenter_has_no_token_part_for_image_models_and_views_of_tokens_differ() -> None:
    model = encoder()
    both = Augmenter(model.inputs, token_inputs(model), seed=1)
    assert both.kinds == ["tokens"]
    data = Dataset({"input_ids": token_batch(40, seed=2)})
    views = augmented_views(data, both, batch_size=16)
    assert views.arrays["input_ids"].shape == (40, 8) and not np.array_equal(views.arrays["input_ids"],
                                                                            data.arrays["input_ids"])
    assert not Augmenter(model.inputs, {}, seed=1).active



def _refit_data(data: Dataset, views: int | None = None, **config) -> Dataset:
    from types import SimpleNamespace

    from smart_onnx.executor import Executor
    from smart_onnx.graph import infer_output_roles
    from smart_onnx.search.search import _refit_data, _trainer

    model = encoder()
    cfg = SearchConfig(sparsity=0.5, batch_size=8, **config)
    space = SimpleNamespace(scored_layers=[])  # the trainer reads only the layers' names (feature points)
    trainer, _, _ = _trainer(Executor(model), space, data, cfg, infer_output_roles(model), None)
    joined, more, view_size = _refit_data(trainer, cfg, REFIT_VIEWS if views is None else views)
    assert (more is None) == (cfg.augment is False)  # further views, for layers short of rows, where augmented
    base = min(len(data), cfg.refit_samples)
    assert view_size == (base if len(joined) > base else None)  # the samples come before their views
    return joined


def test_the_refit_also_fits_augmented_views_of_its_samples() -> None:
    data = Dataset({"input_ids": token_batch(20, seed=4)})
    ids = data.arrays["input_ids"]
    refit = _refit_data(data, views=3)  # 20 samples, augmented by default: 3 views of each
    got = refit.arrays["input_ids"]
    assert got.shape == (80, 8)
    np.testing.assert_array_equal(got[:20], ids)  # the samples themselves first
    for k in range(1, 4):
        view = got[20 * k: 20 * (k + 1)]
        assert not np.array_equal(view, ids) and (view == ids).mean() > 0.7  # about 15% of the ids replaced
    assert not np.array_equal(got[20:40], got[40:60])
    np.testing.assert_array_equal(_refit_data(data, views=3).arrays["input_ids"], got)  # reproducible
    assert len(_refit_data(data)) == 20 * (1 + REFIT_VIEWS)
    capped = _refit_data(data, refit_samples=10, views=2)  # views of the first refit_samples samples
    assert len(capped) == 30
    np.testing.assert_array_equal(capped.arrays["input_ids"][:10], ids[:10])
    assert len(_refit_data(data, augment=False)) == 20
    assert len(_refit_data(data, views=0)) == 20


def test_image_models_refit_views_of_their_samples_up_to_refit_samples_and_more_for_layers_short_of_rows() -> None:
    from types import SimpleNamespace

    from devkit.zoo import export as export_model
    from devkit.zoo import resnet_like
    from smart_onnx.executor import Executor
    from smart_onnx.graph import infer_output_roles
    from smart_onnx.model import normalize
    from smart_onnx.search.search import _refit_data, _trainer

    module, example = resnet_like()
    model = normalize(export_model(module, example, dynamo=False, opset=17))
    data = Dataset({model.inputs[0].name: np.random.default_rng(0).random((20, *example.shape[1:]), np.float32)})
    cfg = SearchConfig(sparsity=0.5, batch_size=8)
    trainer, _, _ = _trainer(Executor(model), SimpleNamespace(scored_layers=[]), data, cfg,
                             infer_output_roles(model), None)
    assert trainer.augmenter is not None and trainer.augmenter.kinds == ["image"]
    refit, views, view_size = _refit_data(trainer, cfg)
    name = model.inputs[0].name
    samples = trainer.data.arrays[name]
    assert view_size == len(samples) == 20 and len(refit) == 20 * (cfg.refit_samples // 20)  # 11 views fill 256
    assert np.array_equal(refit.arrays[name][:20], samples)  # the samples themselves first
    joined = refit.arrays[name][20:]
    assert not any(np.array_equal(joined[k * 20:(k + 1) * 20], samples) for k in range(len(joined) // 20))
    first, second = views(0).arrays[name], views(1).arrays[name]  # further views, not among those joined
    assert first.shape == samples.shape and not any(np.array_equal(first, joined[k * 20:(k + 1) * 20])
                                                    for k in range(len(joined) // 20))
    assert not np.array_equal(first, second) and np.array_equal(views(0).arrays[name], first)  # reproducible
    few, _, _ = _refit_data(trainer, replace(cfg, refit_samples=50))  # 20 samples and 1 view; 2 would pass 50
    assert len(few) == 40
    alone, _, none = _refit_data(trainer, replace(cfg, refit_samples=20))
    assert len(alone) == 20 and none is None


def test_the_report_says_how_many_views_the_refit_fitted() -> None:
    from devkit.zoo import export as export_model
    from devkit.zoo import resnet_like
    from smart_onnx.model import normalize

    module, example = resnet_like()
    model = normalize(export_model(module, example, dynamo=False, opset=17))
    data = Dataset({model.inputs[0].name: np.random.default_rng(0).random((40, *example.shape[1:]), np.float32)})
    config = SearchConfig(sparsity=0.5, steps=2, finetune_steps=2, batch_size=8, time_budget=None, refit_samples=128)
    refit = prune(model, data, None, PruneOptions(mode="block", block=(4, 4, 1, 1), search=config,
                                                   latency=False)).report.training.refit
    # 40 samples (too few to hold 10 % out); 128 // 40 - 1 = 2 views of each; no deadline: every pass fits them all
    assert (refit.views, refit.samples, refit.paced) == (2, 120, 0) and refit.layers > 0
    assert not {"paced", "paced_passes"} & refit.to_dict().keys() and refit.to_dict()["views"] == 2


def test_the_teachers_dense_copy_shares_what_is_never_trained_and_no_gradient_is_kept_for_it() -> None:
    from smart_onnx.executor import Executor
    from smart_onnx.search.trainer import Trainer

    model = encoder()
    (table,) = lookup_tables(model)
    executor = Executor(model)
    trainer = Trainer(executor, Dataset({"input_ids": token_batch(16, seed=1)}), batch_size=8, seed=0, device="cpu",
                      label_weight=0.0, temperature=1.0, outputs=[], label_output=None)
    dense = trainer.teacher.dense_executor()
    untrained = [n for n in executor.weights.names() if n not in trainer.trained]
    assert table in untrained and trainer.trained
    for name in untrained:  # the same storage: one copy of the token table, not two
        assert dense.weights.get(name).data_ptr() == executor.weights.get(name).data_ptr()
        assert not executor.weights.get(name).requires_grad
    for name, p in trainer.trained.items():  # the trained ones are the dense model's own
        assert dense.weights.get(name).data_ptr() != p.data_ptr() and p.requires_grad
        assert torch.equal(dense.weights.get(name), p.detach())
    ids = torch.as_tensor(token_batch(4, seed=2))
    expected = Executor(model)({"input_ids": ids})
    got = trainer.teacher.dense({"input_ids": ids})
    assert all(torch.equal(got[k], v) for k, v in expected.items())
