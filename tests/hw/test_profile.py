"""Profile loading: built-ins, files, and one clear error per malformed field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from smart_onnx.errors import ProfileError
from smart_onnx.hw import (
    DEFAULT_PROFILE,
    OpRule,
    builtin_names,
    list_profiles,
    load_profile,
    parse_profile,
    profile_from_dict,
)

BASE = {"name": "t", "ops": {"Conv": {"blocks": ["16x8x1x1"]}}}


def test_builtin_profiles_load_with_the_promised_rules() -> None:
    profiles = {p.name: p for p in list_profiles()}
    assert set(profiles) == {"npu-block", "npu-channel", "npu-2to4", "tensorrt-2to4", "ort-cpu"} == set(
        builtin_names())
    assert builtin_names()[0] == DEFAULT_PROFILE == load_profile().name
    block = profiles["npu-block"]
    assert block.rule_for("Conv").blocks == ((16, 8, 1, 1),)
    assert block.rule_for("ConvTranspose").blocks == ((16, 8, 1, 1),)  # the default entry
    assert block.rule_for("Gemm").blocks == block.rule_for("MatMul").blocks == ((16, 8),)
    assert (block.channel_alignment, block.mode) == (8, "block")
    channel = profiles["npu-channel"]
    assert (channel.channel_alignment, channel.min_channels, channel.modes) == (16, 16, ("channel",))
    assert not channel.rule_for("Conv").allows_sparsity
    nm = profiles["npu-2to4"]
    assert all(nm.rule_for(op).nm == ((2, 4),) for op in ("Gemm", "MatMul", "Conv"))
    assert nm.rule_for("ConvTranspose") == OpRule()
    assert nm.mode == "nm" and all(p.source == "built-in" for p in profiles.values())
    trt = profiles["tensorrt-2to4"]
    for op in ("Conv", "Gemm", "MatMul"):
        rule = trt.rule_for(op)
        assert rule.nm == ((2, 4),) and not rule.blocks
        assert (rule.in_channel_multiple, rule.out_channel_multiple, rule.min_reduction, rule.min_out_channels) == (
            16, 8, 256, 256)
    assert trt.rule_for("ConvTranspose") == OpRule() and trt.precisions == ("float16", "int8")
    assert trt.mode == "nm" and trt.references
    ort = profiles["ort-cpu"]
    assert ort.modes == ("channel",) and (ort.channel_alignment, ort.min_channels) == (16, 16)
    assert ort.precisions == ("float32", "int8") and ort.references


def test_eligibility_fields_parse_and_are_checked() -> None:
    p = profile_from_dict({"name": "t", "precisions": ["int8"], "references": ["doc"],
                           "ops": {"Conv": {"nm": ["2:4"], "in_channel_multiple": 16, "min_macs": 1000}}})
    rule = p.rule_for("Conv")
    assert (rule.in_channel_multiple, rule.min_macs, rule.min_reduction) == (16, 1000, 1)
    assert rule.conditions == {"in_channel_multiple": 16, "min_macs": 1000}
    assert p.to_dict()["ops"]["Conv"]["in_channel_multiple"] == 16 and p.to_dict()["precisions"] == ["int8"]
    with pytest.raises(ProfileError, match="field 'ops.Conv.in_channel_multiple' must be at least 1"):
        profile_from_dict({"name": "t", "ops": {"Conv": {"nm": ["2:4"], "in_channel_multiple": 0}}})
    with pytest.raises(ProfileError, match="field 'precisions\\[0\\]' is 'fp8'"):
        profile_from_dict({"name": "t", "precisions": ["fp8"]})
    with pytest.raises(ProfileError, match="field 'ops.Gemm.min_macs' must be at least 0"):
        profile_from_dict({"name": "t", "ops": {"Gemm": {"min_macs": -1}}})


def test_profile_file_by_path_takes_its_stem_as_default_name(tmp_path: Path) -> None:
    path = tmp_path / "my-npu.toml"
    path.write_text('description = "mine"\nchannel_alignment = 4\n[ops.default]\nnm = ["1:4"]\n')
    p = load_profile(path)
    assert (p.name, p.description, p.channel_alignment, p.mode) == ("my-npu", "mine", 4, "nm")
    assert p.rule_for("MatMul").nm == ((1, 4),) and p.source == str(path)


@pytest.mark.parametrize(
    ("target", "message"),
    [("npu-nothing", "unknown target 'npu-nothing'; built-in targets are npu-block"),
     ("missing.toml", "profile file 'missing.toml' does not exist")],
)
def test_unknown_target_or_missing_file(target: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_profile(target)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match=r"bad.toml is not valid TOML"):
        load_profile(path)


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"colour": "red"}, "colour", "is unknown; known fields here are name"),
        ({"name": 3}, "name", "must be a non-empty string"),
        ({"name": " "}, "name", "must be a non-empty string"),
        ({"description": ["x"]}, "description", "must be a string"),
        ({"channel_alignment": 0}, "channel_alignment", "must be at least 1"),
        ({"channel_alignment": 8.0}, "channel_alignment", "must be an integer"),
        ({"channel_alignment": True}, "channel_alignment", "must be an integer"),
        ({"min_channels": -2}, "min_channels", "must be at least 1"),
        ({"max_layer_sparsity": 1.5}, "max_layer_sparsity", r"must lie in \[0, 1\]"),
        ({"max_layer_sparsity": -0.1}, "max_layer_sparsity", r"must lie in \[0, 1\]"),
        ({"max_layer_sparsity": "high"}, "max_layer_sparsity", "must be a number"),
        ({"dense_ops": "Conv"}, "dense_ops", "must be an array"),
        ({"dense_ops": ["Conv", "Relu"]}, "dense_ops[1]", "is 'Relu'; choose one of Conv, ConvTranspose"),
        ({"dense_layers": [""]}, "dense_layers[0]", "must be a non-empty string"),
        ({"mode": "sparse"}, "mode", "choose one of block, channel, nm"),
        ({"mode": "nm"}, "mode", "allows no nm pattern for any op"),
        ({"ops": ["Conv"]}, "ops", "must be a table of op types"),
        ({"ops": {"Relu": {}}}, "ops.Relu", "is unknown; known fields here are Conv"),
        ({"ops": {"Conv": "16x8"}}, "ops.Conv", "must be a table"),
        ({"ops": {"Conv": {"block": ["16x8"]}}}, "ops.Conv.block", "is unknown; known fields here are blocks, nm"),
        ({"ops": {"Conv": {"blocks": "16x8"}}}, "ops.Conv.blocks", "must be an array"),
        ({"ops": {"Conv": {"blocks": ["16x0x1x1"]}}}, "ops.Conv.blocks[0]", "not a block shape"),
        ({"ops": {"Conv": {"blocks": ["16"]}}}, "ops.Conv.blocks[0]", "not a block shape"),
        ({"ops": {"Conv": {"blocks": ["16xax1"]}}}, "ops.Conv.blocks[0]", "not a block shape"),
        ({"ops": {"Conv": {"blocks": [16]}}}, "ops.Conv.blocks[0]", "must be a string"),
        ({"ops": {"Gemm": {"blocks": ["16x8x3x3"]}}}, "ops.Gemm.blocks[0]", "Gemm has no kernel dims"),
        ({"ops": {"Gemm": {"nm": ["2-4"]}}}, "ops.Gemm.nm[0]", "not an N:M pattern"),
        ({"ops": {"Gemm": {"nm": ["4:4"]}}}, "ops.Gemm.nm[0]", "needs 0 < N < M"),
        ({"ops": {"Gemm": {"nm": ["0:4"]}}}, "ops.Gemm.nm[0]", "needs 0 < N < M"),
    ],
)
def test_malformed_field_is_named(change: dict, field: str, problem: str) -> None:
    with pytest.raises(ProfileError, match=rf"profile f\.toml: field '{re.escape(field)}' .*{problem}") as info:
        profile_from_dict({**BASE, **change}, source="f.toml")
    assert "\n" not in str(info.value)


def test_missing_name_without_a_file() -> None:
    with pytest.raises(ProfileError, match="field 'name' is missing"):
        profile_from_dict({"ops": {}})


def test_defaults_and_derived_mode() -> None:
    p = profile_from_dict({"name": "bare"})
    assert (p.channel_alignment, p.min_channels, p.max_layer_sparsity, p.mode) == (1, 1, 1.0, "channel")
    assert profile_from_dict(BASE).mode == "block"
    assert profile_from_dict(BASE).to_dict()["ops"] == {"Conv": {"blocks": ["16x8x1x1"], "nm": []}}


def test_the_documented_example_parses() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "profiles.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    p = parse_profile(example, source="docs/profiles.md")
    assert p.name == "my-npu" and p.rule_for("Conv").blocks == ((16, 8, 1, 1), (8, 8, 1, 1))
    assert p.rule_for("ConvTranspose").blocks == ((16, 8, 1, 1),) and p.rule_for("Gemm").nm == ((2, 4),)
    assert p.dense_layers == ("first", "last", "/head/*") and p.max_layer_sparsity == 0.9
