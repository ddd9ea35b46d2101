"""Block mode: zeroed blocks match a numpy-masked original in onnxruntime; metadata; COO storage."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper

from smart_onnx.errors import ConstraintError
from smart_onnx.model import OnnxModel, load_model, normalize, save_model
from smart_onnx.rewrite.block import BLOCK_SPARSITY_KEY, BlockMask, apply_block_masks, read_block_sparsity
from smart_onnx.rewrite.passes import validate
from tests.helpers import run_ort
from tests.rewrite import random_feeds, typed_model


def _conv(out_c: int = 32, in_c: int = 16) -> OnnxModel:
    rng = np.random.default_rng(1)
    return typed_model(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1, 1, 1, 1])],
        {"x": np.zeros((1, in_c, 6, 6), np.float32)},
        ["y"],
        {"W": rng.standard_normal((out_c, in_c, 3, 3)).astype(np.float32),
         "B": rng.standard_normal(out_c).astype(np.float32)},
    )


def _gemm(out_f: int = 24, in_f: int = 20) -> OnnxModel:
    rng = np.random.default_rng(2)
    return typed_model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)],
        {"x": np.zeros((3, in_f), np.float32)},
        ["y"],
        {"W": rng.standard_normal((out_f, in_f)).astype(np.float32),
         "B": rng.standard_normal(out_f).astype(np.float32)},
    )


def _matmul(in_f: int = 20, out_f: int = 24) -> OnnxModel:
    rng = np.random.default_rng(3)
    return typed_model(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        {"x": np.zeros((3, in_f), np.float32)},
        ["y"],
        {"W": rng.standard_normal((in_f, out_f)).astype(np.float32)},
    )


def _random_grid(shape: tuple[int, ...], block: tuple[int, ...], sparsity: float, seed: int = 0) -> np.ndarray:
    """A keep-grid with exactly round(sparsity * blocks) pruned blocks."""
    grid_shape = tuple(-(-d // b) for d, b in zip(shape, block))
    n = int(np.prod(grid_shape))
    keep = np.ones(n, dtype=bool)
    keep[np.random.default_rng(seed).permutation(n)[: round(sparsity * n)]] = False
    return keep.reshape(grid_shape)


def _numpy_masked(model: OnnxModel, name: str, grid: np.ndarray, block: tuple[int, ...]) -> onnx.ModelProto:
    """The original model with the masked blocks zeroed by plain numpy loops (an independent reference)."""
    w = model.weight(name).copy()
    for cell in zip(*np.nonzero(~grid)):
        w[tuple(slice(c * b, (c + 1) * b) for c, b in zip(cell, block))] = 0
    out = model.copy()
    for t in out.graph.initializer:
        if t.name == name:
            t.CopyFrom(onnx.numpy_helper.from_array(w, name))
    return out.proto


def _dense(model: OnnxModel) -> onnx.ModelProto:
    """A densified copy (normalize() edits the proto it is given)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model.proto)
    return normalize(copy).proto


CASES = {
    "conv-16x8x1x1": (_conv, (16, 8, 1, 1)),
    "conv-8x8x1x1": (_conv, (8, 8, 1, 1)),
    "conv-16x8x1x1-ragged": (lambda: _conv(20, 12), (16, 8, 1, 1)),
    "conv-8x8x3x3-ragged": (lambda: _conv(20, 12), (8, 8, 3, 3)),
    "gemm-4x1": (_gemm, (4, 1)),
    "gemm-4x1-ragged": (lambda: _gemm(22, 18), (4, 1)),
    "matmul-4x1": (_matmul, (4, 1)),
    "matmul-4x1-ragged": (lambda: _matmul(18, 22), (4, 1)),
}


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy_masked_original(case: str, sparsity: float) -> None:
    build, block = CASES[case]
    model = build()
    grid = _random_grid(model.weight("W").shape, block, sparsity, seed=hash(case) % 1000)
    out = apply_block_masks(model, {"W": BlockMask(grid, block)}, sparse_format="dense")
    feeds = random_feeds(model)
    expected = run_ort(_numpy_masked(model, "W", grid, block), feeds)[0]
    actual = run_ort(out.proto, feeds)[0]
    assert np.max(np.abs(actual - expected)) <= 1e-6
    onnx.checker.check_model(out.proto, full_check=True)
    assert [n.name for n in out.graph.node] == [n.name for n in model.graph.node]
    record = read_block_sparsity(out.proto)["W"]
    assert record["pruned_blocks"] == round(sparsity * grid.size)
    assert record["total_blocks"] == grid.size
    assert record["block_shape"] == list(block)
    # Random normal weights hold no exact zeros, so every zero is a pruned element.
    assert record["sparsity"] == pytest.approx(float(np.mean(out.weight("W") == 0)))


def test_zero_percent_is_the_original() -> None:
    model = _conv()
    grid = np.ones((2, 2, 3, 3), dtype=bool)
    out = apply_block_masks(model, {"W": (grid, (16, 8, 1, 1))})
    np.testing.assert_array_equal(out.weight("W"), model.weight("W"))
    feeds = random_feeds(model)
    assert np.max(np.abs(run_ort(out.proto, feeds)[0] - run_ort(model.proto, feeds)[0])) <= 1e-6
    assert read_block_sparsity(out.proto)["W"]["sparsity"] == 0.0


def test_input_model_is_untouched_and_shapes_keep() -> None:
    model = _gemm()
    before = model.proto.SerializeToString()
    out = apply_block_masks(model, {"W": (_random_grid((24, 20), (4, 1), 0.5), (4, 1))}, sparse_format="dense")
    assert model.proto.SerializeToString() == before
    assert out.weight("W").shape == (24, 20) and out.weight("W").dtype == np.float32


def test_metadata_merges_with_existing_entry() -> None:
    model = _gemm()
    model.proto.metadata_props.add(key="author", value="someone")
    first = apply_block_masks(model, {"W": (_random_grid((24, 20), (4, 1), 0.5), (4, 1))}, sparse_format="dense")
    second = apply_block_masks(first, {"B": (_random_grid((24,), (4,), 0.25), (4,))}, sparse_format="dense")
    entries = {e.key: e.value for e in second.proto.metadata_props}
    assert entries["author"] == "someone"
    data = json.loads(entries[BLOCK_SPARSITY_KEY])
    assert sorted(r["tensor"] for r in data["tensors"]) == ["B", "W"]
    assert sum(e.key == BLOCK_SPARSITY_KEY for e in second.proto.metadata_props) == 1


@pytest.mark.parametrize("sparsity", [0.25, 0.875])
def test_dense_is_the_default_and_coo_is_a_constant_node(sparsity: float) -> None:
    model = _conv()
    grid = _random_grid((32, 16, 3, 3), (16, 8, 1, 1), sparsity)
    default = apply_block_masks(model, {"W": (grid, (16, 8, 1, 1))})
    coo = apply_block_masks(model, {"W": (grid, (16, 8, 1, 1))}, sparse_format="coo")
    assert "W" in {t.name for t in default.graph.initializer} and not default.graph.sparse_initializer
    assert [n.output[0] for n in coo.graph.node if n.op_type == "Constant"] == ["W"]
    assert not coo.graph.sparse_initializer and "W" not in {t.name for t in coo.graph.initializer}
    for out in (default, coo):
        onnx.checker.check_model(out.proto, full_check=True)
    assert (coo.proto.ByteSize() < default.proto.ByteSize()) == (sparsity > 0.7)
    np.testing.assert_array_equal(OnnxModel(_dense(coo)).weight("W"), default.weight("W"))


def test_coo_model_runs_in_onnxruntime_and_loads_back_dense(tmp_path) -> None:
    model = _matmul()
    grid = _random_grid((20, 24), (4, 1), 0.75)
    out = apply_block_masks(model, {"W": (grid, (4, 1))}, sparse_format="coo")
    validate(out)
    feeds = random_feeds(model)
    expected = run_ort(_numpy_masked(model, "W", grid, (4, 1)), feeds)[0]
    assert np.max(np.abs(run_ort(out.proto, feeds)[0] - expected)) <= 1e-6
    path = save_model(out, tmp_path / "m.onnx")
    loaded = load_model(path)
    assert not loaded.graph.sparse_initializer
    np.testing.assert_array_equal(loaded.weight("W"), OnnxModel(_dense(out)).weight("W"))
    assert np.max(np.abs(run_ort(loaded.proto, feeds)[0] - expected)) <= 1e-6


def test_fully_pruned_tensor_as_coo_runs() -> None:
    model = _matmul()
    out = apply_block_masks(model, {"W": (np.zeros((5, 24), bool), (4, 1))}, sparse_format="coo")
    feeds = random_feeds(model)
    assert np.all(run_ort(out.proto, feeds)[0] == 0)


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        ({"nope": (np.ones((2, 2, 3, 3), bool), (16, 8, 1, 1))}, "not an initializer"),
        ({"W": (np.ones((2, 2, 3), bool), (16, 8, 1, 1))}, "needs"),
        ({"W": (np.ones((2, 2, 3, 3), np.float32), (16, 8, 1, 1))}, "bool"),
        ({"W": (np.ones((2, 2), bool), (16, 8))}, "one positive size per axis"),
        ({"W": (np.ones((2, 2, 3, 3), bool), (16, 8, 0, 1))}, "one positive size per axis"),
    ],
)
def test_bad_masks_are_refused(masks, match: str) -> None:
    model = _conv()
    before = model.proto.SerializeToString()
    with pytest.raises(ConstraintError, match=match):
        apply_block_masks(model, masks)
    assert model.proto.SerializeToString() == before


def test_unknown_sparse_format_is_refused() -> None:
    with pytest.raises(ConstraintError, match="sparse_format"):
        apply_block_masks(_gemm(), {}, sparse_format="csr")


def test_expand_cuts_partial_edge_blocks() -> None:
    mask = BlockMask(np.array([[True, False], [False, True]]), (3, 2))
    keep = mask.expand((5, 3))
    assert keep.shape == (5, 3)
    np.testing.assert_array_equal(keep[:, 2], [False, False, False, True, True])
    np.testing.assert_array_equal(keep[0], [True, True, False])


def test_tensors_inside_subgraphs_are_masked() -> None:
    """An If branch holding its own initializer (a wrap_in_if-style export) gets its blocks zeroed too."""
    w = np.random.default_rng(4).standard_normal((8, 6)).astype(np.float32)
    then = helper.make_graph([helper.make_node("MatMul", ["x", "Wt"], ["t"], name="mm_then")], "then", [],
                             [helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, [2, 6])],
                             [onnx.numpy_helper.from_array(w, "Wt")])
    other = helper.make_graph([helper.make_node("Identity", ["zero"], ["e"], name="id_else")], "else", [],
                              [helper.make_tensor_value_info("e", onnx.TensorProto.FLOAT, [2, 6])],
                              [onnx.numpy_helper.from_array(np.zeros((2, 6), np.float32), "zero")])
    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other)
    model = typed_model([node], {"x": np.zeros((2, 8), np.float32)}, ["y"], {"cond": np.array(True)})
    grid = _random_grid((8, 6), (4, 1), 0.5)
    out = apply_block_masks(model, {"Wt": (grid, (4, 1))}, sparse_format="dense")
    feeds = random_feeds(model)
    expected = feeds["x"] @ (w * BlockMask(grid, (4, 1)).expand(w.shape))
    np.testing.assert_allclose(run_ort(out.proto, feeds)[0], expected, rtol=1e-5, atol=1e-6)
