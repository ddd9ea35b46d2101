"""Issue 5: for every zoo architecture and every built-in profile, what `prune` writes passes `check`."""

from __future__ import annotations

import numpy as np
import pytest

from devkit.zoo import ARCHITECTURES
from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError
from smart_onnx.hw import check_model, list_profiles
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig

PROFILES = [p.name for p in list_profiles()]
_pruned: dict[str, list[str]] = {}
# The refusals expected, and the reason each gives: the zoo's layers are too small for these profiles.
# Channel alignment 16 (npu-channel, ort-cpu) leaves the groups of 16 to 32 channels these architectures
# have nothing to remove at 30%; TensorRT's 2:4 kernels need >= 256 output channels, which no zoo layer has.
# Any other refusal fails, and so does a pair listed here that prunes after all (update the table).
_SMALL_CHANNELS = {"convtranspose_decoder", "nhwc_tf_style", "resnet_like", "se_block", "yolo_like"}
REFUSED: dict[str, tuple[set[str], str]] = {
    "npu-channel": (_SMALL_CHANNELS, "channels per group, aligned to 16"),
    "ort-cpu": (_SMALL_CHANNELS, "channels per group, aligned to 16"),
    "tensorrt-2to4": (set(ARCHITECTURES), "allows no N:M pattern for any layer"),
}


def _data(model, n: int = 12):
    rng = np.random.default_rng(0)
    arrays = {}
    for spec in model.inputs:
        shape = [d if isinstance(d, int) and d > 0 else 2 for d in spec.shape]
        arrays[spec.name] = rng.standard_normal((n, *shape[1:])).astype(spec.dtype)
    return dataset_from_arrays(arrays, model.inputs)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_prune_output_passes_check_for_its_target(zoo_export, arch: str, profile: str) -> None:
    from smart_onnx.hw import load_profile

    target = load_profile(profile)
    model = normalize(zoo_export(arch, "legacy17").proto)
    calib, hold = _data(model).split(0.25, seed=0)
    options = PruneOptions(target=target, latency=False, search=SearchConfig(
        sparsity=None if target.mode == "nm" else 0.3, steps=2, finetune_steps=1, batch_size=4))
    refused, reason = REFUSED.get(profile, (set(), ""))
    try:
        out = prune(model, calib, hold, options)
    except ConstraintError as e:
        assert arch in refused and reason in str(e), f"prune refused {arch} under {profile}: {e}"
        return
    assert arch not in refused, f"{arch} under {profile} was expected to be refused ({reason}) but pruned"
    assert out.report.check.passed, out.report.check.violations
    assert check_model(normalize(out.model.proto), target, reference=model).passed
    _pruned.setdefault(profile, []).append(arch)


@pytest.mark.slow
def test_every_profile_pruned_some_architecture() -> None:
    """The refusals above must not be the whole story: each profile really prunes part of the zoo."""
    if len(_pruned) == 0:
        pytest.skip("run together with test_prune_output_passes_check_for_its_target")
    # tensorrt-2to4 accelerates only layers with >= 256 output channels and a reduction of >= 256
    # (TensorRT's own threshold, docs/profiles.md); no zoo architecture has one, so every prune refuses
    # (tests/cli/test_rule_packs.py checks that a 256-channel layer is the one it picks).
    assert set(_pruned) == set(PROFILES) - {"tensorrt-2to4"}, _pruned
