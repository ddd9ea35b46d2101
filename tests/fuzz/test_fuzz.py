"""Architecture fuzzer in the suite: a few seeds by default, more under -m slow, hundreds in tools/soak.py.

A failing case names its seed and a one-line reproduction command
(``python -m tools.soak --seed N --cases 1``).
"""

from __future__ import annotations

import pytest
import torch

from devkit.fuzz import case as fuzz_case
from devkit.fuzz.arch import random_architecture
from devkit.fuzz.case import FuzzFailure, draw_settings, run_case

# Legacy-exporter seeds that run in a few seconds each; the slow set includes dynamo exports (0, 3, 7).
FAST_SEEDS = (1, 4, 5)
SLOW_SEEDS = (0, 2, 3, 6, 7, 8, 9, 10, 11, 12)


@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_fuzz_case(seed: int) -> None:
    outcome = run_case(seed)
    assert set(outcome.modes) == {"block", "channel", "nm"}
    assert all(r.startswith(("ok", "refused:")) for r in outcome.modes.values()), outcome.modes


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_fuzz_case_slow(seed: int) -> None:
    outcome = run_case(seed)
    assert all(r.startswith(("ok", "refused:")) for r in outcome.modes.values()), outcome.modes


def test_channel_mode_keeps_a_channel_of_every_slice() -> None:
    run_case(37)


def test_generator_is_deterministic() -> None:
    a, b = random_architecture(42), random_architecture(42)
    assert a.summary == b.summary
    assert torch.equal(a.example, b.example)
    for (na, pa), (nb, pb) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert na == nb and torch.equal(pa, pb)
    assert draw_settings(42, 0.15) == draw_settings(42, 0.15)


def test_generator_covers_every_feature() -> None:
    text = " | ".join(" ".join(random_architecture(s).summary) for s in range(60))
    for feature in ("g1 ", "residual over 2", "residual over 3", "split at", "swapped", "se ", "convT2", "convT3",
                    "token ffn", " ln", "nhwc wrapper", "(permute out)", "gemm", "pool+", " s2"):
        assert feature in text, feature
    depthwise = [m for s in range(60) for m in random_architecture(s).module.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    assert depthwise


def test_failure_names_seed_and_reproduction(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(fuzz_case, "prune", broken)
    with pytest.raises(FuzzFailure) as info:
        run_case(1)
    msg = str(info.value)
    assert msg.startswith("seed 1 ") and "boom" in msg and "at prune block" in msg
    assert "python -m tools.soak --seed 1 --cases 1" in msg and "\n" not in msg

