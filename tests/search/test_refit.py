"""refit_layers: masked weights stay zero, each layer's and the model's error to the dense model drops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from smart_onnx.data import Dataset
from smart_onnx.executor import Executor
from smart_onnx.graph import analyze, find_prunable_layers
from smart_onnx.model import copy_proto, iter_graphs, normalize
from smart_onnx.search import BlockSpace, ChannelSpace, GroupedRanking, NMSpace, SearchConfig
from smart_onnx.search.refit import refit_layers
from tests.helpers import count_forwards, make_model, run_ranks


def _setup(zoo_export, arch: str, mode: str, seed: int = 0, samples: int = 48, kept: float = 0.5):
    """Model, pruned and dense executors, the space's layers, a random hard mask's transforms (blocks: about
    ``kept`` of them kept), data."""
    zm = zoo_export(arch, "legacy17")
    model = normalize(copy_proto(zm.proto))
    analysis = analyze(model)
    gen = torch.Generator().manual_seed(seed)
    if mode == "block":
        space = BlockSpace(analysis.layers, (4, 4, 1, 1))
        transforms = space.transforms((torch.rand(space.num_units, generator=gen) < kept).float())
    elif mode == "nm":
        space = NMSpace(analysis.layers, 2, 4)
        keep = GroupedRanking(space).harden(torch.rand(space.num_units, generator=gen), SearchConfig(sparsity=None))
        transforms = space.transforms(keep.float())
    else:
        shapes = {t.name: tuple(int(d) for d in t.dims) for g in iter_graphs(model.graph) for t in g.initializer}
        space = ChannelSpace(analysis, analysis.groups, shapes)
        scores = torch.rand(space.num_units, generator=gen)
        transforms = space.transforms(space.keep_every_axis(scores < 0.6, scores).float())
    (name, example), = zm.feeds.items()
    rng = np.random.default_rng(seed)
    calib = Dataset({name: rng.standard_normal((samples, *example.shape[1:])).astype(np.float32)})
    held = Dataset({name: rng.standard_normal((32, *example.shape[1:])).astype(np.float32)})
    dense = Executor(model)
    for p in dense.parameters():
        p.requires_grad_(False)
    return model, Executor(model), dense, list(space.scored_layers), transforms, calib, held


def _outputs(executor: Executor, data: Dataset, transforms=None) -> dict[str, torch.Tensor]:
    feeds = {k: torch.from_numpy(v) for k, v in data.arrays.items()}
    with torch.no_grad():
        return executor(feeds, transforms=transforms)


def _values(executor: Executor, data: Dataset, names, transforms=None) -> dict[str, torch.Tensor]:
    got: dict[str, torch.Tensor] = {}

    def recorder(name, inner):
        def record(x):
            x = inner(x) if inner else x
            got[name] = x
            return x
        return record

    hooked = dict(transforms or {})
    hooked.update({n: recorder(n, hooked.get(n)) for n in names})
    _outputs(executor, data, hooked)
    return got


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).square().sum() / b.double().square().sum())


CASES = [("resnet_like", "block"), ("resnet_like", "nm"), ("resnet_like", "channel"),
         ("mobilenetv2_like", "block"), ("mobilenetv2_like", "channel"),
         ("mlp_gemm", "block"), ("mlp_gemm", "channel"), ("vit_block", "nm")]


@pytest.mark.parametrize("arch,mode", CASES)
def test_refit_keeps_masks_and_lowers_layer_and_model_error(zoo_export, arch: str, mode: str) -> None:
    # A Gemm sees one row per sample: it needs 2 per input feature (fc1 has 64 inputs); a conv sees many.
    samples = 160 if arch == "mlp_gemm" else 32
    model, executor, dense, layers, transforms, calib, held = _setup(zoo_export, arch, mode, samples=samples)
    before = _outputs(executor, held, transforms)
    calls = []
    report = refit_layers(executor, dense, layers, transforms, calib, batch_size=32, max_samples=samples,
                          progress=lambda done, total: calls.append((done, total)))
    assert [r.name for r in report.layers] == [lay.name for lay in layers]
    assert calls and calls[-1] == (len(layers), len(layers)) and report.passes == len(calls)
    refitted = [r for r in report.layers if r.skipped is None]
    assert len(refitted) >= max(1, len(layers) - 1)  # vit_block: the patch embedding reads the image, still refit

    # (1) every masked weight and bias element is exactly zero in the parameters themselves
    by_name = {lay.name: lay for lay in layers}
    for r in refitted:
        for tensor in (by_name[r.name].weight, by_name[r.name].bias):
            if tensor is not None and tensor in transforms:
                value = executor.weights.get(tensor)
                masked = transforms[tensor](torch.ones_like(value)) == 0
                assert bool((value[masked] == 0).all()), tensor

    # (2) per layer: never worse, strictly better for most; the reported error is the measured one
    assert all(r.error_after <= r.error_before * (1 + 1e-9) + 1e-12 for r in refitted)
    nodes = {n.name: n for n in model.graph.node}
    ins = [nodes[r.name].input[0] for r in refitted]
    pruned_in, dense_in = _values(executor, calib, ins, transforms), _values(dense, calib, ins)
    # A layer whose input is unpruned and that loses whole output channels keeps the dense weights
    # on its other rows, which are already exact: nothing to improve there.
    improvable = [r for r, x in zip(refitted, ins)
                  if not (mode == "channel" and torch.equal(pruned_in[x], dense_in[x]))]
    assert sum(r.error_after < r.error_before for r in improvable) >= 0.75 * len(improvable)
    outs = [nodes[r.name].output[0] for r in refitted]
    pruned_out = _values(executor, calib, outs, transforms)
    dense_out = _values(dense, calib, outs)
    for r, out in zip(refitted, outs):
        assert _relative(pruned_out[out], dense_out[out]) == pytest.approx(r.error_after, rel=1e-3, abs=1e-9)

    # (3) the model's outputs on held-out data are closer to the dense model's than the masked ones were
    after = _outputs(executor, held, transforms)
    reference = _outputs(dense, held)
    for name, ref in reference.items():
        assert _relative(after[name], ref) < _relative(before[name], ref)


@pytest.mark.parametrize("arch", ["resnet_like", "mlp_gemm"])
def test_re_chosen_blocks_keep_every_block_rows_count_and_lower_the_error(zoo_export, arch: str) -> None:
    samples = 160 if arch == "mlp_gemm" else 32
    model = normalize(copy_proto(zoo_export(arch, "legacy17").proto))
    space = BlockSpace(analyze(model).layers, (4, 4, 1, 1))
    gen = torch.Generator().manual_seed(0)
    keep = torch.rand(space.num_units, generator=gen) < 0.5
    locked = torch.rand(space.num_units, generator=gen) < 0.2
    layers = list(space.scored_layers)
    _, _, dense, _, _, calib, _ = _setup(zoo_export, arch, "block", samples=samples)
    plain, chosen = Executor(model), Executor(model)
    args = dict(batch_size=32, max_samples=samples)
    searched = refit_layers(plain, dense, layers, space.transforms(keep.float()), calib, **args)
    masks: dict[str, torch.Tensor] = {}
    report = refit_layers(chosen, dense, layers, space.transforms(keep.float()), calib, units=space.element_units,
                          locked=locked, masks=masks, **args)
    assert masks, "no layer re-chose a block"
    new = keep.clone()
    for weight, kept in masks.items():
        ids = space.element_units(weight)
        assert all(bool((kept[ids == u] == kept[ids == u][0]).all()) for u in ids.unique())  # whole blocks
        new[ids[kept]], new[ids[~kept]] = True, False
    assert bool((new[locked] == keep[locked]).all())
    for lb in space.layers:  # every block row keeps as many blocks
        rows = lb.units.grid_shape[0]
        assert torch.equal(new[lb.start:lb.end].reshape(rows, -1).sum(1),
                           keep[lb.start:lb.end].reshape(rows, -1).sum(1)), lb.layer.name
    # the weights are zero outside the new mask and the reported errors are those of the model under it
    transforms = space.transforms(new.float())
    nodes = {n.name: n for n in model.graph.node}
    refitted = [r for r in report.layers if r.skipped is None]
    for lay in (lay for lay, r in zip(layers, report.layers) if r.skipped is None):
        value = chosen.weights.get(lay.weight)
        assert bool((value[transforms[lay.weight](torch.ones_like(value)) == 0] == 0).all())
    outs = [nodes[r.name].output[0] for r in refitted]
    pruned_out, dense_out = _values(chosen, calib, outs, transforms), _values(dense, calib, outs)
    for r, out in zip(refitted, outs):
        assert _relative(pruned_out[out], dense_out[out]) == pytest.approx(r.error_after, rel=1e-3, abs=1e-9)
    first = layers[0].name  # the same input either way: re-choosing can only lower its error
    assert report.layers[0].name == first and report.layers[0].error_after <= searched.layers[0].error_after
    assert report.layers[0].error_after < searched.layers[0].error_after or layers[0].weight not in masks


def test_first_layer_error_before_is_the_masked_models(zoo_export) -> None:
    model, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "resnet_like", "block", seed=1)
    stem = layers[0]
    out = next(n for n in model.graph.node if n.name == stem.name).output[0]
    expected = _relative(_values(executor, calib, [out], transforms)[out], _values(dense, calib, [out])[out])
    report = refit_layers(executor, dense, [stem], transforms, calib, batch_size=16, max_samples=len(calib))
    assert report.layers[0].error_before == pytest.approx(expected, rel=1e-4)
    assert report.layers[0].error_after < report.layers[0].error_before
    assert report.passes == 1


def test_unmasked_layers_are_refit_to_compensate_upstream_pruning(zoo_export) -> None:
    _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "resnet_like", "block")
    last = layers[-1]
    only_first = {layers[0].weight: transforms[layers[0].weight]}
    report = refit_layers(executor, dense, [last], only_first, calib, batch_size=16, max_samples=48)
    assert report.layers[0].skipped is None and report.layers[0].error_after < report.layers[0].error_before
    assert report.layers[0].rows_refit > 0


def _fresh_samples(calib: Dataset):
    """View ``k``: fresh samples of the calibration data's distribution (standard normal), as many as it has."""
    (name, array), = calib.arrays.items()

    def view(k: int) -> Dataset:
        return Dataset({name: np.random.default_rng(100 + k).standard_normal(array.shape).astype(np.float32)})

    return view


def test_layers_short_of_rows_draw_views_and_keep_their_blocks(zoo_export) -> None:
    # mlp_gemm: Gemms of 64 and 32 inputs, one row per sample; about 15 % of the 4x4 blocks kept.
    runs = [0]

    def run(views=None, max_views=8):
        _, executor, dense, layers, transforms, calib, held = _setup(zoo_export, "mlp_gemm", "block", samples=24,
                                                                     kept=0.15)
        space = BlockSpace(layers, (4, 4, 1, 1))
        masks: dict[str, torch.Tensor] = {}
        counted = count_forwards(dense, "run_range")
        report = refit_layers(executor, dense, layers, transforms, calib, batch_size=8, max_samples=24,
                              units=space.element_units, views=views, max_views=max_views, masks=masks)
        runs[0] = counted[0]
        (pruned,), (target,) = _outputs(executor, held, transforms).values(), _outputs(dense, held).values()
        # 4 rows per kept weight let the kept weights be solved; blocks are re-chosen on the samples alone
        assert masks == {}
        return report, _relative(pruned, target), calib

    alone, error_alone, calib = run()
    assert all(r.skipped and "calibration rows for" in r.skipped and "kept a row" in r.skipped for r in alone.layers)
    drawn, fresh = [], _fresh_samples(calib)

    def views(k: int) -> Dataset:
        drawn.append(k)
        return fresh(k)

    report, error, _ = run(views)
    assert all(r.skipped is None for r in report.layers)
    assert all(r.samples >= 24 * 2 and r.samples % 24 == 0 for r in report.layers)  # whole views, as needed
    assert drawn[0] == 0 and max(drawn) < 7  # the first layer's rows were enough before the last view
    assert error < error_alone
    run()
    plain = runs[0]
    drawn.clear()
    few, _, _ = run(views, max_views=1)  # 48 rows cannot reach 66 or 68: view 0 counted in each pass, never run
    assert set(drawn) == {0} and all(r.skipped for r in few.layers) and runs[0] == plain


def test_views_are_drawn_for_a_layers_own_pruning_not_to_make_up_for_the_layers_before(zoo_export) -> None:
    _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "mlp_gemm", "block", samples=24, kept=0.15)
    first, last = layers
    only_first = {first.weight: transforms[first.weight]}  # the classifier keeps every weight
    report = refit_layers(executor, dense, layers, only_first, calib, batch_size=8, max_samples=24,
                          views=_fresh_samples(calib))
    refit_first, skipped_last = report.layers
    assert refit_first.skipped is None and refit_first.samples > 24
    assert skipped_last.skipped and skipped_last.samples == 24


def test_a_row_fitted_on_views_keeps_its_weights_where_the_samples_error_would_rise(zoo_export) -> None:
    _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "mlp_gemm", "block", samples=24, kept=0.15)
    (name, array), = calib.arrays.items()
    first = layers[0]
    out = next(n for n in executor.model.graph.node if n.name == first.name).output[0]

    def samples_error() -> torch.Tensor:  # per output feature, over the calibration samples
        got, want = _values(executor, calib, [out], transforms)[out], _values(dense, calib, [out])[out]
        return (got.double() - want.double()).square().sum(0)

    before = samples_error()
    # views the samples never resemble: the least squares over both fits them at the samples' cost
    report = refit_layers(executor, dense, [first], transforms, calib, batch_size=8, max_samples=24,
                          views=lambda k: Dataset({name: 5.0 - 3.0 * array}), max_views=8)
    (result,) = report.layers
    assert result.skipped is None and result.samples > 24 and result.error_after < result.error_before
    after = samples_error()
    assert bool((after <= before * (1 + 1e-6) + 1e-9).all())
    assert 0 < result.rows_refit < 32  # some rows took the new weights, some kept theirs


def test_under_a_deadline_later_passes_drop_the_views_the_time_left_cannot_pay_for(zoo_export) -> None:
    from smart_onnx.search.distributed import clock

    # 48 samples: the first 16 the calibration samples, the other 32 stand for two views of them.
    def rows(deadline: float | None) -> list[int]:
        _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "resnet_like", "block")
        report = refit_layers(executor, dense, layers, transforms, calib, batch_size=8, max_samples=48,
                              view_size=16, deadline=deadline)
        assert report.passes > 2 and len(report.samples) == report.passes
        assert report.samples == [48] + [48 if deadline is None or deadline > clock() else 16] * (report.passes - 1)
        return [r.samples for r in report.layers]

    unpaced, ample, late = rows(None), rows(clock() + 3600), rows(clock() - 1)
    assert ample == unpaced
    assert late[0] == unpaced[0]  # the first pass runs every sample and measures
    assert all(r * 3 == u for r, u in zip(late[1:], unpaced[1:]))  # then only the samples: no time is left


def test_the_pacing_takes_back_views_where_the_passes_since_ran_ahead_of_its_estimate(monkeypatch) -> None:
    from smart_onnx.search import refit

    now = [0.0]
    monkeypatch.setattr(refit, "clock", lambda: now[0])
    pacing = refit._Pacing(48, 16, deadline=15.0, work=[1.0, 1.0, 1.0, 1.0])  # the samples and two views
    assert pacing.samples(0) == 48  # nothing measured yet
    pacing.ran(0, 48, 4.8)  # 0.1 s a sample and unit of work
    now[0] = 4.8  # three passes of 48 samples would take 14.4 s; 0.7 of the 10.2 s left pays for 23 samples
    assert pacing.samples(1) == 16
    pacing.ran(1, 16, 0.16)  # a tenth of the estimate: 0.0775 s a sample and unit over both passes
    now[0] = 4.96  # 0.7 of 10.04 s pays for 45 samples in each of the two passes left
    assert pacing.samples(2) == 32
    pacing.ran(2, 32, 6.0)  # slower again
    now[0] = 10.96
    assert pacing.samples(3) == 16


def test_convtranspose_is_skipped_with_a_reason(zoo_export) -> None:
    model, executor, dense, layers, transforms, calib, held = _setup(zoo_export, "convtranspose_decoder", "block")
    report = refit_layers(executor, dense, layers, transforms, calib, batch_size=16, max_samples=32)
    kinds = {lay.name: lay.op_type for lay in layers}
    for r in report.layers:
        if kinds[r.name] == "ConvTranspose":
            assert r.skipped and "ConvTranspose" in r.skipped and r.error_before is None
        else:
            assert r.skipped is None and r.error_after <= r.error_before
    assert sum(r.skipped is not None for r in report.layers) == 2


def test_a_weight_only_matmul_and_a_tied_weight_are_skipped() -> None:
    rng = np.random.default_rng(0)
    w = {name: rng.standard_normal((8, 8)).astype(np.float32) for name in ("a", "b", "t")}
    nodes = [helper.make_node("MatMul", ["a", "b"], ["ab"], name="const_mm"),
             helper.make_node("MatMul", ["x", "ab"], ["h"], name="x_ab"),
             helper.make_node("MatMul", ["h", "t"], ["h2"], name="tied1"),
             helper.make_node("MatMul", ["h2", "t"], ["y"], name="tied2")]
    x = rng.standard_normal((16, 8)).astype(np.float32)
    model = normalize(make_model(nodes, {"x": x}, ["y"], w))
    layers = find_prunable_layers(model)
    assert [lay.name for lay in layers] == ["const_mm", "tied1", "tied2"]  # x_ab's weight is computed
    executor, dense = Executor(model), Executor(model)
    report = refit_layers(executor, dense, layers, {}, Dataset({"x": x}), batch_size=8)
    reasons = {r.name: r.skipped for r in report.layers}
    assert "constant" in reasons["const_mm"]
    assert "tied" in reasons["tied1"] and "tied" in reasons["tied2"]
    assert report.passes == 0


def _hand_model_case(nodes, x, weights, block):
    """Hand-made model, random block mask, refit on ``x``: (report, measured errors after, layers)."""
    model = normalize(make_model(nodes, {"x": x}, ["y"], weights))
    layers = find_prunable_layers(model)
    space = BlockSpace(layers, block)
    transforms = space.transforms((torch.rand(space.num_units, generator=torch.Generator().manual_seed(0)) < 0.6)
                                  .float())
    executor, dense = Executor(model), Executor(model)
    data = Dataset({"x": x})
    report = refit_layers(executor, dense, layers, transforms, data, batch_size=32, max_samples=len(x))
    outs = [n.output[0] for n in model.graph.node if n.name in {lay.name for lay in layers}]
    pruned, ref = _values(executor, data, outs, transforms), _values(dense, data, outs)
    return report, [_relative(pruned[o], ref[o]) for o in outs], layers, executor, transforms


def test_conv_attributes_and_groups_are_reproduced() -> None:
    """Grouped conv with asymmetric pads, strides and dilations; a 1-D conv; both refit, not skipped."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="grouped", group=2, pads=[0, 1, 1, 2],
                              strides=[2, 1], dilations=[1, 2]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="same", auto_pad="SAME_UPPER", strides=[2, 1])]
    weights = {"w1": rng.standard_normal((6, 2, 3, 3)), "b1": rng.standard_normal(6),
               "w2": rng.standard_normal((4, 6, 2, 2))}
    x = rng.standard_normal((48, 4, 9, 9)).astype(np.float32)
    report, measured, *_ = _hand_model_case(nodes, x, {k: v.astype(np.float32) for k, v in weights.items()},
                                            (2, 1, 1, 1))
    assert [r.skipped for r in report.layers] == [None, None]
    for r, m in zip(report.layers, measured):
        assert r.error_after < r.error_before and m == pytest.approx(r.error_after, rel=1e-3)

    nodes_1d = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv1d", pads=[2, 0], dilations=[2])]
    x1 = rng.standard_normal((64, 3, 20)).astype(np.float32)
    x1[:, 1:] += x1[:, :-1]  # correlated channels, so dropping one can be compensated by its neighbour
    report, measured, *_ = _hand_model_case(nodes_1d, x1, {"w": rng.standard_normal((4, 3, 3)).astype(np.float32)},
                                            (1, 1, 1))
    assert report.layers[0].skipped is None
    assert report.layers[0].error_after < report.layers[0].error_before
    assert measured[0] == pytest.approx(report.layers[0].error_after, rel=1e-3)


def test_gemm_alpha_beta_and_untransposed_weight() -> None:
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm", alpha=0.5, beta=2.0, transB=0)]
    x = rng.standard_normal((200, 12)).astype(np.float32)
    x[:, 6:] += x[:, :6]  # correlated inputs
    weights = {"w": rng.standard_normal((12, 5)).astype(np.float32), "c": rng.standard_normal(5).astype(np.float32)}
    report, measured, layers, executor, transforms = _hand_model_case(nodes, x, weights, (1, 2))
    r = report.layers[0]
    assert r.skipped is None and r.error_after < r.error_before
    assert measured[0] == pytest.approx(r.error_after, rel=1e-3)
    w = executor.weights.get("w")
    assert bool((w[transforms["w"](torch.ones_like(w)) == 0] == 0).all())
    assert not torch.equal(executor.weights.get("c"), torch.from_numpy(weights["c"]))  # the bias was refit


def test_inputs_never_active_keep_their_weights() -> None:
    """A dead input feature gives the solve no information; zeroing its weight would put zeros outside the
    mask's blocks, which a target's check rejects (seen on the bundled ResNet behind a fully pruned conv)."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm", transB=1)]
    x = rng.standard_normal((200, 12)).astype(np.float32)
    x[:, 3] = 0.0  # never active on the calibration data
    weights = {"w": rng.standard_normal((6, 12)).astype(np.float32), "c": rng.standard_normal(6).astype(np.float32)}
    report, _, _, executor, transforms = _hand_model_case(nodes, x, weights, (1, 2))
    w = executor.weights.get("w")
    kept = transforms["w"](torch.ones_like(w)) != 0
    assert report.layers[0].skipped is None and report.layers[0].rows_refit > 0
    assert bool((w[kept] != 0).all())  # no new zeros
    assert torch.equal(w[:, 3][kept[:, 3]], torch.from_numpy(weights["w"])[:, 3][kept[:, 3]])


# CI has no GPU; on a machine with one this proves the sums and solves run on the device.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_refit_on_cuda(zoo_export) -> None:
    _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, "resnet_like", "block")
    report = refit_layers(executor, dense, layers, transforms, calib, batch_size=16, max_samples=32, device="cuda")
    refitted = [r for r in report.layers if r.skipped is None]
    assert refitted and all(r.error_after <= r.error_before for r in refitted)
    assert all(p.device.type == "cuda" for p in executor.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_blocks_are_re_chosen_on_cuda_as_on_the_cpu(zoo_export) -> None:
    model = normalize(copy_proto(zoo_export("resnet_like", "legacy17").proto))
    space = BlockSpace(analyze(model).layers, (4, 4, 1, 1))
    keep = torch.rand(space.num_units, generator=torch.Generator().manual_seed(0)) < 0.5
    _, _, dense, _, _, calib, _ = _setup(zoo_export, "resnet_like", "block")
    masks = {device: {} for device in ("cpu", "cuda")}
    for device, moved in masks.items():
        refit_layers(Executor(model), dense, list(space.scored_layers), space.transforms(keep.float()), calib,
                     batch_size=16, max_samples=32, device=device, units=space.element_units, masks=moved)
    assert masks["cpu"] and masks["cpu"].keys() == masks["cuda"].keys()


def test_a_node_our_model_does_not_reproduce_is_skipped() -> None:
    """A Gemm whose C is [1, N] is not a bias to the layer finder: X W^T misses it, so no refit."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm", transB=1)]
    x = rng.standard_normal((64, 6)).astype(np.float32)
    weights = {"w": rng.standard_normal((4, 6)).astype(np.float32), "c": np.full((1, 4), 3.0, np.float32)}
    report, *_ = _hand_model_case(nodes, x, weights, (1, 2))
    assert report.layers[0].skipped and "does not reproduce" in report.layers[0].skipped


@pytest.mark.parametrize("arch,mode", [("resnet_like", "block"), ("mobilenetv2_like", "channel"), ("vit_block", "nm")])
def test_resumed_passes_equal_passes_from_the_inputs_with_fewer_node_runs(zoo_export, monkeypatch, arch: str,
                                                                         mode: str) -> None:
    import smart_onnx.search.refit as refit_module
    from smart_onnx.executor import GraphModule

    runs = {"count": 0}
    original = GraphModule._run_node

    def counted(self, idx, env, transforms):
        runs["count"] += 1
        return original(self, idx, env, transforms)

    monkeypatch.setattr(GraphModule, "_run_node", counted)
    weights, node_runs = [], []
    for budget in (refit_module._SNAPSHOT_BYTES, 0):  # 0: nothing kept, every pass runs from the inputs
        monkeypatch.setattr(refit_module, "_SNAPSHOT_BYTES", budget)
        _, executor, dense, layers, transforms, calib, _ = _setup(zoo_export, arch, mode, samples=48)
        runs["count"] = 0
        report = refit_layers(executor, dense, layers, transforms, calib, batch_size=16, max_samples=48)
        assert any(r.skipped is None for r in report.layers) and report.passes > 2
        node_runs.append(runs["count"])
        weights.append({name: p.detach().clone() for name, p in executor.weights.named_parameters()})
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], rtol=1e-5, atol=1e-6, msg=name)
    assert node_runs[0] < 0.6 * node_runs[1]


def _refit_run(zm, batch_size: int, views: bool = False, samples: int = 32) -> dict:
    """One rank's refit of resnet_like under a block mask: its weights, report and dense forward passes; with
    ``views``, fresh samples for the layers short of rows."""
    _, executor, dense, layers, transforms, calib, _ = _setup(lambda *_: zm, "resnet_like", "block", samples=samples)
    runs = count_forwards(dense, "run_range")  # one run per batch and pass, resumed from its snapshot
    report = refit_layers(executor, dense, layers, transforms, calib, batch_size=batch_size, max_samples=samples,
                          views=_fresh_samples(calib) if views else None)
    return {"weights": executor.weights.to_arrays(executor.weights.parameter_names()), "runs": runs[0],
            "passes": report.passes, "layers": [(r.name, r.skipped, r.samples, r.rows_refit, r.error_before,
                                                 r.error_after) for r in report.layers]}


def test_two_ranks_refit_like_one_with_half_the_batches_each(zoo_export, tmp_path) -> None:
    zm = zoo_export("resnet_like", "legacy17")
    one = _refit_run(zm, 8)  # 4 batches a pass, in this process
    assert sum(skipped is None for _, skipped, *_ in one["layers"]) >= 2
    two = run_ranks(_refit_run, 2, tmp_path, zm, 8)
    assert one["runs"] == 4 * one["passes"]
    assert [r["runs"] for r in two] == [2 * one["passes"]] * 2  # each rank ran batches 0, 2 or 1, 3 of every pass
    for rank in two:
        assert rank["passes"] == one["passes"]
        for a, b in zip(rank["layers"], one["layers"]):
            assert a[:4] == b[:4]  # same layers refit, on every sample row, the same rows improved
            assert a[4:] == (b[4:] if b[1] else pytest.approx(b[4:], rel=1e-9, abs=1e-12))
        assert rank["weights"].keys() == one["weights"].keys()
        for name, w in one["weights"].items():
            np.testing.assert_allclose(rank["weights"][name], w, rtol=1e-5, atol=1e-6, err_msg=name)
    for name in one["weights"]:  # rank 0's weights everywhere, bit for bit
        np.testing.assert_array_equal(two[0]["weights"][name], two[1]["weights"][name])


def test_two_ranks_draw_the_same_views_for_a_layer_short_of_rows(zoo_export, tmp_path) -> None:
    zm = zoo_export("resnet_like", "legacy17")
    alone, one = _refit_run(zm, 4, samples=16), _refit_run(zm, 4, views=True, samples=16)
    short = [a[0] for a, b in zip(alone["layers"], one["layers"]) if a[1] and not b[1]]
    assert short  # the classifier after global pooling: one row per sample
    two = run_ranks(_refit_run, 2, tmp_path, zm, 4, True, 16)
    for rank in two:
        for a, b in zip(rank["layers"], one["layers"]):
            assert a[:4] == b[:4]
        for name, w in one["weights"].items():
            np.testing.assert_allclose(rank["weights"][name], w, rtol=1e-5, atol=1e-6, err_msg=name)
    assert [r["runs"] for r in two][0] == [r["runs"] for r in two][1] < one["runs"]  # each rank half the views
