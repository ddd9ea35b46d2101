"""The checker: one test per rule on hand-made weights, compliant models pass, foreign models are judged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_onnx.errors import ConstraintError
from smart_onnx.hw import (
    RULES,
    CheckReport,
    check_model,
    load_profile,
    original_layers,
    profile_from_dict,
    record_original,
)
from smart_onnx.hw.patterns import nm_problems, stray_zeros
from smart_onnx.search import BlockUnits
from tests.hw import magnitude_prune, small_cnn, weight

NPU_BLOCK = load_profile("npu-block")


def _zeroed(name: str, *regions: tuple[slice, ...], c1: int = 32) -> np.ndarray:
    w = weight(name, c1)
    for region in regions:
        w[region] = 0
    return w


def _rules(report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in report.violations:
        out.setdefault(v.layer, set()).add(v.rule)
    return out


def test_dense_model_complies_and_frozen_classifier_is_not_judged_on_channels() -> None:
    report = check_model(small_cnn(), NPU_BLOCK)
    assert report.passed and report.violations == []
    assert [lay.pattern for lay in report.layers] == ["dense"] * 3
    assert report.layers[2].out_channels == 10  # not a multiple of 8, but its group feeds the graph output
    assert report.to_dict()["passed"] is True and len(report.to_dict()["layers"]) == 3


@pytest.mark.parametrize(
    ("name", "region", "pattern"),
    [
        ("c2.w", (slice(0, 16), slice(8, 16)), "block 16x8x1x1"),
        ("c2.w", (slice(16, 32), slice(0, 32)), "block 16x8x1x1"),
        ("fc.w", (slice(0, 10), slice(24, 32)), "block 16x8"),  # a partial edge block (10 of 16 rows)
    ],
)
def test_aligned_block_zeros_comply(name: str, region: tuple[slice, ...], pattern: str) -> None:
    report = check_model(small_cnn(weights={name: _zeroed(name, region)}), NPU_BLOCK)
    layer = next(lay for lay in report.layers if lay.weight == name)
    assert report.passed and layer.pattern == pattern and layer.sparsity > 0


@pytest.mark.parametrize(
    "region", [(slice(4, 20), slice(8, 16)), (slice(0, 16), slice(4, 12)), (slice(0, 8), slice(0, 8))],
    ids=["shifted-rows", "shifted-cols", "half-block"],
)
def test_misaligned_block_zeros_fail_the_pattern_rule(region: tuple[slice, ...]) -> None:
    report = check_model(small_cnn(weights={"c2.w": _zeroed("c2.w", region)}), NPU_BLOCK)
    assert not report.passed and _rules(report) == {"c2": {"pattern"}}
    assert report.layers[1].pattern == "unstructured"
    assert "16x8x1x1 blocks that are not all zero" in report.violations[0].message


def test_second_allowed_block_shape_is_tried() -> None:
    profile = profile_from_dict({"name": "two", "ops": {"default": {"blocks": ["16x8x1x1", "8x8x1x1"]}}})
    report = check_model(small_cnn(weights={"c2.w": _zeroed("c2.w", (slice(8, 16), slice(0, 8)))}), profile)
    assert report.passed and report.layers[1].pattern == "block 8x8x1x1"


def _two_of_four(w: np.ndarray, axis: int) -> np.ndarray:
    """Zero positions 1 and 3 of every group of 4 along ``axis``."""
    out = np.moveaxis(w.copy(), axis, -1)
    out[..., 1::4] = 0
    out[..., 3::4] = 0
    return np.moveaxis(out, -1, axis)


def test_valid_two_of_four_complies_along_the_input_axis() -> None:
    weights = {"fc.w": _two_of_four(weight("fc.w"), 1), "c2.w": _two_of_four(weight("c2.w"), 1)}
    report = check_model(small_cnn(weights=weights), load_profile("npu-2to4"))
    assert report.passed
    assert [lay.pattern for lay in report.layers] == ["dense", "2:4", "2:4"]


@pytest.mark.parametrize("axis", [0, None], ids=["output-axis", "one-group-too-dense"])
def test_bad_nm_fails_the_pattern_rule(axis: int | None) -> None:
    w = weight("fc.w")
    if axis is None:
        w = _two_of_four(w, 1)
        w[3, 5] = 1.0  # group 4..7 of row 3 now keeps 3 of 4
    else:
        w = _two_of_four(w, axis)  # 2:4 along the *output* axis is not the input axis
    report = check_model(small_cnn(weights={"fc.w": w}), load_profile("npu-2to4"))
    assert _rules(report) == {"fc": {"pattern"}}
    assert "groups of 4 along the input axis keep more than 2 non-zeros" in report.violations[0].message


def test_nm_zero_in_the_ragged_tail_fails() -> None:
    profile = profile_from_dict({"name": "t", "ops": {"Gemm": {"nm": ["2:3"]}}})  # 32 = 10 groups of 3 + 2
    w = weight("fc.w")
    w[:, 0:30:3] = 0
    assert check_model(small_cnn(weights={"fc.w": w}), profile).passed
    w[0, 31] = 0
    report = check_model(small_cnn(weights={"fc.w": w}), profile)
    assert _rules(report) == {"fc": {"pattern"}} and "ragged tail" in report.violations[0].message


@pytest.mark.parametrize(("c1", "ok"), [(24, True), (12, False), (4, False)])
def test_channel_count_alignment_and_minimum(c1: int, ok: bool) -> None:
    profile = profile_from_dict({"name": "t", "channel_alignment": 8, "min_channels": 8})
    report = check_model(small_cnn(c1), profile)
    assert report.passed is ok
    if not ok:
        assert _rules(report) == {"c1": {"channels"}}
        assert f"has {c1} output channels, not a multiple of the profile's channel_alignment 8" in \
            report.violations[0].message
    if c1 == 4:
        assert "fewer than the profile's min_channels 8" in report.violations[0].message


def test_channel_counts_the_model_already_had_pass_with_reference_or_metadata() -> None:
    pruned = small_cnn(12)
    assert not check_model(pruned, NPU_BLOCK).passed
    assert check_model(pruned, NPU_BLOCK, reference=small_cnn(12)).passed
    assert not check_model(pruned, NPU_BLOCK, reference=small_cnn(32)).passed  # 32 -> 12: reduced, misaligned
    record_original(pruned.proto, small_cnn(12))
    report = check_model(pruned, NPU_BLOCK)
    assert report.passed and "metadata" in report.notes[0]


def _dead_rows(name: str, rows: list[int]) -> np.ndarray:
    """A trained model's own zeros: whole output channels (BatchNorm folding of a dead channel)."""
    return _zeroed(name, *[(slice(r, r + 1),) for r in rows])


def test_zeros_the_original_already_had_pass_with_reference_or_metadata() -> None:
    original = small_cnn(weights={"c1.w": _dead_rows("c1.w", [3]), "c2.w": _dead_rows("c2.w", [5, 20])})
    assert _rules(check_model(original, NPU_BLOCK)) == {"c1": {"pattern"}, "c2": {"pattern"}}
    assert check_model(original, NPU_BLOCK, reference=original).passed
    assert original_layers(original)["c2"] == {"out_channels": 32, "zeros": 64}
    c2 = _dead_rows("c2.w", [5, 20])
    c2[16:32, 8:16] = 0  # a pruned block on top of the original's zeros
    pruned = small_cnn(weights={"c1.w": _dead_rows("c1.w", [3]), "c2.w": c2})
    report = check_model(pruned, NPU_BLOCK, reference=original)
    assert report.passed and report.layers[1].pattern == "block 16x8x1x1"
    record_original(pruned.proto, original)
    assert check_model(pruned, NPU_BLOCK).passed
    c2[0, 0] = 0  # one zero more than the original had, outside any block
    report = check_model(small_cnn(weights={"c2.w": c2}), NPU_BLOCK, reference=original)
    assert _rules(report) == {"c2": {"pattern"}}
    assert "1 of its 121 zeros the original did not have lie in 16x8x1x1 blocks" in report.violations[0].message
    by_count = small_cnn(weights={"c2.w": c2})
    record_original(by_count.proto, original)  # metadata: a count, not positions; 57 stray <= 64
    assert check_model(by_count, NPU_BLOCK).passed
    c2[8, 0:8] = 0
    report = check_model(small_cnn(weights={"c2.w": c2}), NPU_BLOCK, reference=small_cnn(weights={"c2.w": c2[:, :]}))
    assert report.passed  # the reference has these very zeros


def test_too_sparse_layer_fails_the_sparsity_rule() -> None:
    profile = profile_from_dict({"name": "t", "max_layer_sparsity": 0.5, "ops": {"default": {"blocks": ["16x8"]}}})
    w = _zeroed("c2.w", (slice(0, 32), slice(0, 24)))  # 75% zeros in whole blocks
    report = check_model(small_cnn(weights={"c2.w": w}), profile)
    assert _rules(report) == {"c2": {"sparsity"}}
    assert "is 75.0% zeros, more than the profile's max_layer_sparsity 50.0%" in report.violations[0].message


@pytest.mark.parametrize(
    ("profile", "layer"),
    [
        ({"dense_layers": ["first"]}, "c1"),
        ({"dense_layers": ["last"]}, "fc"),
        ({"dense_layers": ["c*"]}, "c2"),
        ({"dense_ops": ["Conv"]}, "c2"),
    ],
)
def test_dense_only_layer_with_zeros_fails_the_dense_rule(profile: dict, layer: str) -> None:
    profile = profile_from_dict({"name": "t", "ops": {"default": {"blocks": ["16x8"]}}, **profile})
    weights = {"c1.w": _zeroed("c1.w", (slice(0, 16), slice(0, 8))),
               "c2.w": _zeroed("c2.w", (slice(0, 16), slice(0, 8))),
               "fc.w": _zeroed("fc.w", (slice(0, 10), slice(0, 8)))}
    report = check_model(small_cnn(weights=weights), profile)
    assert {name for name, rules in _rules(report).items() if "dense" in rules} >= {layer}
    assert all(rules == {"dense"} for rules in _rules(report).values())
    assert f"layer '{layer}'" in " ".join(v.message for v in report.violations)


def test_zeros_where_the_profile_allows_no_pattern_fail() -> None:
    report = check_model(small_cnn(weights={"c2.w": _zeroed("c2.w", (slice(0, 16), slice(0, 8)))}),
                         load_profile("npu-channel"))
    assert _rules(report) == {"c2": {"pattern"}}
    assert "allows no sparse pattern for Conv" in report.violations[0].message


def test_unstructured_magnitude_pruned_model_fails_npu_block_with_layers_named() -> None:
    weights = {name: magnitude_prune(weight(name), 0.5) for name in ("c1.w", "c2.w", "fc.w")}
    report = check_model(small_cnn(weights=weights), NPU_BLOCK)
    assert not report.passed
    assert _rules(report) == {"c1": {"pattern"}, "c2": {"pattern"}, "fc": {"pattern"}}
    assert [lay.pattern for lay in report.layers] == ["unstructured"] * 3
    assert all(abs(lay.sparsity - 0.5) < 0.01 for lay in report.layers)


def test_only_the_rules_asked_for_are_judged() -> None:
    """prune judges its output by its mode's rules: misaligned channels break no block rule, and stray zeros
    no channel rule."""
    profile = profile_from_dict({"name": "t", "channel_alignment": 8, "min_channels": 8})
    misaligned = small_cnn(12, weights={"c2.w": magnitude_prune(weight("c2.w", 12), 0.5)})
    assert _rules(check_model(misaligned, profile)) == {"c1": {"channels"}, "c2": {"pattern"}}
    blocks = check_model(misaligned, profile, rules=("pattern", "dense", "sparsity"))
    assert blocks.rules == ("pattern", "dense", "sparsity") and _rules(blocks) == {"c2": {"pattern"}}
    channels = check_model(misaligned, profile, rules=("channels",))
    assert channels.rules == ("channels",) and _rules(channels) == {"c1": {"channels"}}
    assert CheckReport.from_dict(channels.to_dict()) == channels and channels.to_dict()["rules"] == ["channels"]


def test_a_check_of_every_rule_writes_no_rules_key_and_reads_back_as_every_rule() -> None:
    report = check_model(small_cnn(), NPU_BLOCK)
    assert report.rules == RULES and "rules" not in report.to_dict()
    assert CheckReport.from_dict(report.to_dict()).rules == RULES


def test_an_unknown_rule_is_refused() -> None:
    with pytest.raises(ConstraintError, match="`rules` names no checker rule 'diagonal'"):
        check_model(small_cnn(), NPU_BLOCK, rules=("pattern", "diagonal"))


@pytest.mark.parametrize(
    ("shape", "block", "zeros", "stray"),
    [
        ((4, 4), (2, 2), [(slice(0, 2), slice(2, 4))], 0),
        ((4, 4), (2, 2), [(slice(1, 3), slice(0, 2))], 4),
        ((5, 3), (2, 2), [(slice(4, 5), slice(2, 3))], 0),  # the 1x1 corner is a whole partial block
        ((5, 3), (2, 2), [(slice(4, 5), slice(0, 1))], 1),
        ((2, 3), (16, 8), [(slice(0, 2), slice(0, 3))], 0),  # block clipped to the weight
    ],
)
def test_stray_zeros(shape, block, zeros, stray) -> None:
    z = np.zeros(shape, dtype=bool)
    for region in zeros:
        z[region] = True
    assert stray_zeros(z, block) == stray


def test_nm_problems_counts_groups_and_tail() -> None:
    z = np.zeros((2, 9), dtype=bool)
    z[0, [0, 1, 4, 5]] = True  # row 0 fine; row 1 dense: both groups too dense
    z[1, 8] = True  # the tail
    assert nm_problems(z, 1, 2, 4) == (2, 4, 1)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    block=st.lists(st.integers(1, 4), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_masks_from_the_search_units_have_no_stray_zeros(shape: list[int], block: list[int], seed: int) -> None:
    units = BlockUnits(shape, block[: len(shape)])
    keep = torch.rand(units.num_units, generator=torch.Generator().manual_seed(seed)) > 0.5
    zero = units.expand(keep.double()).numpy() == 0
    assert stray_zeros(zero, block[: len(shape)]) == 0
    if zero.any() and not zero.all():
        # Un-zero one element of a pruned block: the rest of that block is now stray.
        pos = tuple(int(i) for i in np.argwhere(zero)[0])
        zero[pos] = False
        span = [min(b, d) for b, d in zip(block, shape)]
        in_block = zero[tuple(slice(p // s * s, p // s * s + s) for p, s in zip(pos, span))]
        assert stray_zeros(zero, block[: len(shape)]) == int(in_block.sum())
