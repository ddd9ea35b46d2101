"""One fuzz case: draw an architecture from a seed, export it, check the executor, prune it three ways.

:func:`run_case` raises :class:`FuzzFailure` (message starts with the seed and the
reproduction command) when anything is wrong; a clear refusal of the library
(``ConstraintError`` / ``UnsupportedOpError`` / ``GraphError``, e.g. nothing prunable in
channel mode) is recorded in the outcome, not a failure. ``RewriteError`` is a failure:
its message says it is a smart-onnx bug.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass, field, replace

import numpy as np
import onnx
from onnx import shape_inference

from devkit.fuzz.arch import random_architecture
from devkit.runs import relative_error, run_executor, run_ort
from devkit.zoo import export
from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError, GraphError, UnsupportedOpError
from smart_onnx.hw import DEFAULT_PROFILE, Profile, check_model, load_profile
from smart_onnx.model import normalize
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig

__all__ = ["CaseOutcome", "FuzzFailure", "draw_settings", "reproduce_command", "run_case"]

EXECUTOR_RTOL = 1e-5
# The pruned model run by the executor vs onnxruntime: same graph, both float32.
PRUNED_RTOL = 1e-4
# Achieved minus requested sparsity above this is recorded (coarse blocks on tiny layers overshoot).
OVERSHOOT = 0.25
REFUSALS = (ConstraintError, UnsupportedOpError, GraphError)
BLOCKS = ((4, 4), (8, 4), (4, 8), (2, 2), (4, 4, 1, 1), (8, 8))
NMS = ((2, 4), (1, 4), (4, 8), (1, 2))


class FuzzFailure(AssertionError):
    """A fuzz case went wrong; the message names the seed and how to reproduce it."""


def reproduce_command(seed: int) -> str:
    return f"python -m tools.soak --seed {seed} --cases 1"


@dataclass
class CaseOutcome:
    """What one case did: settings, per-mode results ('ok' or the refusal message), seconds."""

    seed: int
    exporter: str
    summary: list[str]
    modes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def draw_settings(seed: int, dynamo_fraction: float) -> dict:
    """Exporter, and per mode its sparsity / block / N:M pattern, drawn from ``seed``."""
    rng = random.Random(seed * 7919 + 1)
    dynamo = rng.random() < dynamo_fraction
    return {
        "exporter": "dynamo" if dynamo else f"legacy{rng.choice((13, 17, 20))}",
        "block": PruneOptions(mode="block", search=SearchConfig(sparsity=round(rng.uniform(0.1, 0.8), 3)),
                              block=rng.choice(BLOCKS)),
        "channel": PruneOptions(mode="channel", search=SearchConfig(sparsity=round(rng.uniform(0.1, 0.8), 3))),
        "nm": PruneOptions(mode="nm", search=SearchConfig(sparsity=None), nm=rng.choice(NMS)),
        # Half the block cases target the default hardware profile: its block, its constraints, then `check`.
        "profile": rng.random() < 0.5,
    }


def _export(arch, exporter: str) -> onnx.ModelProto:
    if exporter == "dynamo":
        return export(arch.module, arch.example, dynamo=True)
    return export(arch.module, arch.example, dynamo=False, opset=int(exporter.removeprefix("legacy")))


def _check_executor(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], what: str, rtol: float) -> None:
    expected, actual = run_ort(proto, feeds), run_executor(proto, feeds)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if a.shape != e.shape:
            raise AssertionError(f"{what}: output {i} shape {a.shape} != onnxruntime {e.shape}")
        err = relative_error(a, e)
        if not err <= rtol:
            raise AssertionError(f"{what}: output {i} differs from onnxruntime by {err:.3g} (relative) > {rtol}")


def _check_pruned(proto: onnx.ModelProto, feeds: dict[str, np.ndarray], mode: str) -> None:
    dense = _copied(proto)
    normalize(dense)  # sparse initializers -> dense: full_check wants them as ordinary tensors
    onnx.checker.check_model(dense, full_check=True)
    shape_inference.infer_shapes(dense, check_type=True, strict_mode=True, data_prop=True)
    _check_executor(proto, feeds, f"pruned ({mode})", PRUNED_RTOL)


def _prune_one(proto: onnx.ModelProto, options: PruneOptions, data, holdout, feeds, seed: int,
               profile: Profile | None = None) -> str:
    model = normalize(_copied(proto))
    cfg = replace(options.search, steps=3, finetune_steps=2, batch_size=4, stats_batches=1, seed=seed)
    opts = PruneOptions(mode=options.mode, block=options.block, nm=options.nm, search=cfg, latency=False)
    if profile is not None:
        opts = replace(opts, target=profile, block=None)
    try:
        outcome = prune(model, data, holdout, opts)
    except REFUSALS as e:
        if "in rewrite pass" in str(e):  # the rewriter rejecting the search's own mask is a bug, not a refusal
            raise
        return f"refused: {type(e).__name__}: {e}"
    report = outcome.report
    if not report.export_relative_error <= 1e-4:
        raise AssertionError(f"export error {report.export_relative_error}")
    requested, achieved = report.sparsity.requested, report.sparsity.achieved_params
    if not achieved >= requested - 1e-6:
        raise AssertionError(f"achieved sparsity {achieved:.4f} is below the requested {requested}")
    _check_pruned(outcome.model.proto, feeds, options.mode)
    if profile is not None:
        shapes = {name: (1, *a.shape[1:]) for name, a in data.arrays.items()}
        check = check_model(normalize(_copied(outcome.model.proto)), profile, reference=model, input_shapes=shapes)
        if not check.passed:
            raise AssertionError(f"check against {profile.name} fails: {check.violations[0].message}")
    return "ok" if achieved - requested <= OVERSHOOT else f"ok, overshoot: sparsity {requested} -> {achieved:.3f}"


def run_case(seed: int, dynamo_fraction: float = 0.15) -> CaseOutcome:
    """Run every check for ``seed``; raise FuzzFailure with the seed and a reproduction command."""
    start = time.perf_counter()
    settings = draw_settings(seed, dynamo_fraction)
    arch = random_architecture(seed)
    outcome = CaseOutcome(seed, settings["exporter"], arch.summary)
    stage = "export"
    try:
        proto = _export(arch, settings["exporter"])
        name = proto.graph.input[0].name
        rng = np.random.default_rng(seed)
        sample_shape = tuple(arch.example.shape[1:])
        feeds = {name: rng.standard_normal((3, *sample_shape)).astype(np.float32)}
        stage = "executor vs onnxruntime"
        _check_executor(proto, feeds, "original", EXECUTOR_RTOL)
        specs = normalize(_copied(proto)).inputs
        data = dataset_from_arrays({name: rng.standard_normal((12, *sample_shape)).astype(np.float32)}, specs)
        holdout = dataset_from_arrays({name: rng.standard_normal((4, *sample_shape)).astype(np.float32)}, specs)
        for mode in ("block", "channel", "nm"):
            profile = load_profile(DEFAULT_PROFILE) if mode == "block" and settings["profile"] else None
            stage = f"prune {mode} {_describe(settings[mode], profile)}"
            outcome.modes[mode] = _prune_one(proto, settings[mode], data, holdout, feeds, seed, profile)
    except Exception as e:
        where = traceback.extract_tb(e.__traceback__)[-1]
        raise FuzzFailure(
            f"seed {seed} ({settings['exporter']}; {'; '.join(arch.summary)}) failed at {stage}: "
            f"{type(e).__name__}: {' '.join(str(e).split())[:400]} [{where.filename}:{where.lineno}]; "
            f"reproduce: {reproduce_command(seed)}"
        ) from e
    outcome.seconds = time.perf_counter() - start
    return outcome


def _copied(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def _describe(options: PruneOptions, profile: Profile | None) -> str:
    if profile is not None:
        return f"sparsity {options.search.sparsity} profile {profile.name}"
    if options.mode == "block":
        return f"sparsity {options.search.sparsity} block {'x'.join(map(str, options.block))}"
    if options.mode == "nm":
        return f"{options.nm[0]}:{options.nm[1]}"
    return f"sparsity {options.search.sparsity}"
