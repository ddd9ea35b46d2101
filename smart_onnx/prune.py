"""The whole ``prune`` job as one library call: analysis -> search -> export -> verify -> eval -> report.

Each stage is its own package; this module only wires them together and times them,
so scripts and tests get exactly what the CLI does.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smart_onnx._atomic import write_json
from smart_onnx.data import Dataset
from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.eval.compare import layer_totals
from smart_onnx.eval.fidelity import judge_fidelity
from smart_onnx.eval.ort import evaluate, make_session, run_model
from smart_onnx.executor import Executor
from smart_onnx.graph import Analysis, analyze, infer_output_roles, label_output
from smart_onnx.hw import Profile, block_shapes, check_model, format_block, mode_for, nm_layers, record_original
from smart_onnx.hw.rules import fit_rank
from smart_onnx.model import OnnxModel, copy_proto, iter_graphs, normalize, tensor_to_array
from smart_onnx.provenance import read_provenance, source_sha256, stamp_provenance
from smart_onnx.rewrite import apply_block_masks, apply_channel_masks, set_weights
from smart_onnx.search import (
    BlockSpace,
    ChannelSpace,
    NMSpace,
    SearchConfig,
    StepInfo,
    UnitConstraints,
    achieved_sparsity,
    run_search,
)
from smart_onnx.search_constraints import align_channel_keep, unit_constraints

__all__ = ["MODES", "PruneOptions", "PruneOutcome", "prune", "save_report"]

log = logging.getLogger(__name__)

MODES = ("block", "channel", "nm")
# Exported model vs the masked torch model it came from (DESIGN: 1e-4 relative).
EXPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PruneOptions:
    """What ``smart-onnx prune`` takes besides the model and data."""

    mode: str | None = None  # None: the target's mode (block without a target)
    block: tuple[int, ...] | None = None  # None: the target's block per op (16x8x1x1 without a target)
    nm: tuple[int, int] | None = None  # None: the target's pattern (2:4 without a target)
    target: Profile | None = None
    search: SearchConfig = field(default_factory=SearchConfig)  # its sparsity is the requested one
    sparse_format: str = "dense"  # or "coo" (onnxruntime-only: COO Constant nodes)
    latency: bool = True
    output_roles: Mapping[str, str] = field(default_factory=dict)  # output name -> role, over the inferred ones
    label_output: str | None = None  # None: the single class output, when the data has labels
    min_fidelity: float | None = None  # the gate judged in the report (see smart_onnx.eval.judge_fidelity)


@dataclass
class PruneOutcome:
    """The pruned model and everything the report says about it."""

    model: OnnxModel
    report: dict[str, Any]


def _input_shapes(data: Dataset) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes from the data resolve every symbolic dim (batch -> 1)."""
    return {name: (1, *a.shape[1:]) for name, a in data.arrays.items()}


DEFAULT_BLOCK = (16, 8, 1, 1)
DEFAULT_NM = (2, 4)


def _space(mode: str, analysis: Analysis, model: OnnxModel, options: PruneOptions):
    """The units to search; with a target, only the layers and patterns it accelerates."""
    profile = options.target
    if mode == "block":
        if profile is None:
            return BlockSpace(analysis.layers, options.block or DEFAULT_BLOCK)
        shapes = block_shapes(profile, analysis)
        if options.block is not None:
            _check_block_allowed(profile, analysis, shapes, options.block)
            shapes = dict.fromkeys(shapes, options.block)
        return BlockSpace([lay for lay in analysis.layers if lay.name in shapes], shapes)
    if mode == "channel":
        shapes = {t.name: tuple(int(d) for d in t.dims) for g in iter_graphs(model.graph) for t in g.initializer}
        return ChannelSpace(analysis, analysis.groups, shapes)
    if mode == "nm":
        if profile is None:
            return NMSpace(analysis.layers, *(options.nm or DEFAULT_NM))
        pattern, layers = nm_layers(profile, analysis, options.nm)
        if pattern is None or not layers:
            asked = "" if options.nm is None else f"{options.nm[0]}:{options.nm[1]} "
            raise ConstraintError(f"target {profile.name!r} allows no N:M pattern {asked}for any layer of this model")
        return NMSpace(layers, *pattern)
    raise ConstraintError(f"unknown mode {mode!r}; choose one of {list(MODES)}")


def _check_block_allowed(
    profile: Profile, analysis: Analysis, shapes: Mapping[str, tuple[int, ...]], block: tuple[int, ...]
) -> None:
    """A --block the target cannot run would fail its own check: refuse it before the search."""
    for layer in analysis.layers:
        if layer.name not in shapes:
            continue
        rank = len(layer.weight_shape)
        allowed = {fit_rank(b, rank) for b in profile.rule_for(layer.op_type).blocks}
        if fit_rank(block, rank) not in allowed:
            names = ", ".join(sorted(format_block(b) for b in allowed))
            raise ConstraintError(
                f"block {format_block(block)} is not allowed by target {profile.name!r} for {layer.op_type} "
                f"(layer {layer.name!r} allows {names}); drop --block or pass a --target that allows it"
            )


def _default_constraints(space: Any) -> UnitConstraints:
    """Without a target: every layer (block) or group (channel) keeps at least one unit, no axis is emptied."""
    if isinstance(space, NMSpace) or not space.num_units:
        return UnitConstraints()
    costs = space.costs("params")
    least = torch.zeros(len(space.group_names), dtype=torch.float64)
    least.scatter_reduce_(0, space.unit_group, costs, "amin", include_self=False)
    adjust = space.keep_every_axis if isinstance(space, ChannelSpace) else None
    return UnitConstraints(group_min_keep=least, adjust=adjust)


def _constraints(space: Any, analysis: Analysis, options: PruneOptions) -> UnitConstraints:
    """The target's rules as hard-mask constraints; without a target, channel groups keep one channel."""
    profile = options.target
    if profile is None:
        return _default_constraints(space)
    rules = unit_constraints(profile, space, analysis, kind=options.search.budget)
    if isinstance(space, ChannelSpace):
        def adjust(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            aligned = align_channel_keep(profile, space, space.keep_every_axis(keep, scores), scores)
            return space.keep_every_axis(aligned, scores)

        return UnitConstraints(rules.keep, rules.group_min_keep, adjust=adjust)
    return rules


def prune(
    model: OnnxModel,
    calibration: Dataset,
    holdout: Dataset | None,
    options: PruneOptions,
    *,
    progress: Callable[[StepInfo], None] | None = None,
    command: str | None = None,
) -> PruneOutcome:
    """Prune ``model`` with the SMART search (or a baseline) and verify the result.

    Args:
        model: the loaded model (not modified).
        calibration: data the masks and weights are trained on.
        holdout: data for the evaluation in the report (None: no evaluation).
        options: mode, block / N:M pattern, search settings (sparsity included: None takes an
            N:M pattern's and is refused in the other modes).
        progress: called after each optimisation step.
        command: the command line, recorded in the report.

    Returns:
        The pruned model and the report (a JSON-ready dict).

    Raises:
        ConstraintError: impossible sparsity or mode, nothing prunable, a bad output-role override.
        DataError: labels that several class outputs could take, or a label output that is not a class output.
        RewriteError: the exported model does not reproduce the masked torch model.
    """
    cfg = options.search
    if options.mode is not None and options.mode not in MODES:
        raise ConstraintError(f"unknown mode {options.mode!r}; choose one of {list(MODES)}")
    mode = mode_for(options.target, options.mode) if options.target else (options.mode or "block")
    if mode != "nm" and cfg.sparsity is None:
        raise ConstraintError(f"--sparsity is required in {mode} mode")
    outputs = infer_output_roles(model, options.output_roles)
    have_labels = calibration.labels is not None or (holdout is not None and holdout.labels is not None)
    labelled = label_output(outputs, options.label_output, have_labels)
    if have_labels and labelled is None:
        log.warning("the data has labels but the model has no class output: the labels are not used")
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    executor = Executor(model)  # first: an unsupported op is the error to report, before any analysis
    # Shapes that static inference leaves unknown: one executor pass, not onnx's numpy evaluator.
    analysis = analyze(model, _input_shapes(calibration), measure_shapes=executor.value_shapes)
    space = _space(mode, analysis, model, options)
    if isinstance(space, NMSpace):
        if cfg.sparsity is not None and not math.isclose(cfg.sparsity, space.sparsity, abs_tol=1e-9):
            raise ConstraintError(
                f"N:M {space.n}:{space.m} prunes exactly {space.sparsity:.0%} of each weight; "
                f"--sparsity {cfg.sparsity} contradicts it (leave --sparsity out in nm mode)"
            )
        cfg = replace(cfg, sparsity=space.sparsity)
    constraints = _constraints(space, analysis, options)
    seconds["analysis"] = time.perf_counter() - start

    result = run_search(executor, space, calibration, cfg, constraints=constraints, progress=progress,
                        outputs=outputs, label_output=labelled)
    seconds.update(result.seconds)

    start = time.perf_counter()
    trained = set_weights(model, result.weights)
    if isinstance(space, ChannelSpace):
        pruned = apply_channel_masks(trained, analysis, space.export(result.keep))
    else:
        pruned = apply_block_masks(trained, space.export(result.keep), sparse_format=options.sparse_format)
    hard = [k.float() for k in result.keep] if isinstance(result.keep, list) else result.keep.float()
    session = make_session(pruned)  # one onnxruntime session: export check here, eval below
    export_error = _verify_export(executor, space.transforms(hard), session, holdout or calibration)
    if options.target is not None:
        record_original(pruned.proto, model)
    seconds["export"] = time.perf_counter() - start

    report: dict[str, Any] = {
        "command": command,
        "seed": cfg.seed,
        "mode": mode,
        "method": cfg.method,
        "budget": cfg.budget,
        "target": options.target.name if options.target else None,
        "block": _block_summary(space) if isinstance(space, BlockSpace) else None,
        "nm": [space.n, space.m] if isinstance(space, NMSpace) else None,
        "search": asdict(replace(cfg, steps=result.plan.steps, finetune_steps=result.plan.finetune_steps)),
        "steps": result.plan.to_dict(),
        "training": result.training,
        "sparsity": _sparsity_summary(space, result.keep, cfg.sparsity, cfg.budget),
        "layers": _layer_report(analysis, pruned),
        "frozen_groups": [{"id": g.id, "layers": list(g.layers), "channels": g.channels, "reason": g.frozen}
                          for g in analysis.frozen_groups],
        "outputs": [o.to_dict() for o in outputs],
        "label_output": labelled,
        "export_relative_error": export_error,
        "history": result.history,
    }
    if options.target is not None:
        start = time.perf_counter()
        check = check_model(normalize(copy_proto(pruned.proto)), options.target, reference=model,
                            input_shapes=_input_shapes(calibration))
        report["check"] = check.to_dict()
        seconds["check"] = time.perf_counter() - start
    start = time.perf_counter()
    if holdout is not None:
        batches = [(b.inputs, b.labels) for b in holdout.batches(cfg.batch_size)]
        latency = (1, min(cfg.batch_size, len(holdout))) if options.latency else ()
        evaluation = evaluate(model, session, batches, latency_batches=latency, outputs=outputs,
                              label_output=labelled)
        report["eval"] = evaluation.to_dict()
        report["fidelity"] = judge_fidelity(evaluation.outputs, options.min_fidelity).to_dict()
    seconds["eval"] = time.perf_counter() - start
    report["seconds"] = seconds
    report["totals"] = layer_totals(report["layers"])
    sp = report["sparsity"]
    stamp_provenance(pruned.proto, {
        "mode": mode, "sparsity_requested": cfg.sparsity, "sparsity_budget": cfg.budget,
        "sparsity_achieved": sp["achieved_macs"] if cfg.budget == "macs" else sp["achieved_params"],
        "target": report["target"], "source_sha256": source_sha256(model), "quantized": "no"})
    report["provenance"] = read_provenance(pruned.proto)
    return PruneOutcome(pruned, report)


def _block_summary(space: BlockSpace) -> dict[str, list[int]]:
    """Block shape per layer, in canonical O x I x k order as the user wrote it."""
    return {lb.layer.name: [lb.units.block_shape[a] for a in lb.layer.canonical_axes] for lb in space.layers}


def _verify_export(executor: Executor, transforms: Mapping[str, Any], session: Any, data: Dataset) -> float:
    """onnxruntime on the exported model (``session``) must reproduce the masked executor (else nothing is written)."""
    sample = data.take(min(8, len(data)))
    feeds = {k: np.ascontiguousarray(v) for k, v in sample.arrays.items()}
    executor.to("cpu")
    with torch.no_grad():
        expected = {k: v.numpy() for k, v in executor({k: torch.from_numpy(v) for k, v in feeds.items()},
                                                       transforms=transforms).items()}
    got = run_model(session, feeds)
    worst = 0.0
    for name, e in expected.items():
        if not np.issubdtype(e.dtype, np.floating):
            continue
        scale = float(np.max(np.abs(e))) or 1.0
        err = float(np.max(np.abs(got[name].astype(np.float64) - e))) / scale
        worst = err if not err <= worst else worst  # a NaN error must win, not vanish in max()
    if not worst <= EXPORT_TOLERANCE:
        raise RewriteError(
            f"the rewritten model differs from the masked torch model by {worst:.2g} (relative), more than "
            f"{EXPORT_TOLERANCE}; nothing was written (this is a smart-onnx bug: please report it)"
        )
    return worst


def _sparsity_summary(space: Any, keep: Any, requested: float, budget: str) -> dict[str, Any]:
    if isinstance(space, NMSpace):
        return {"requested": requested, "achieved_params": space.sparsity, "achieved_macs": space.sparsity}
    return {
        "requested": requested,
        "achieved_params": achieved_sparsity(space, keep, "params"),
        "achieved_macs": achieved_sparsity(space, keep, "macs"),
        "budget": budget,
    }


def _layer_report(analysis: Analysis, after: OnnxModel) -> list[dict[str, Any]]:
    """Per prunable layer: weight shape before/after, nonzeros, sparsity (of the original size), MACs after."""
    new = {t.name: t for t in normalize(copy_proto(after.proto)).graph.initializer}  # COO Constants as weights
    rows = []
    for layer in analysis.layers:
        numel = math.prod(layer.weight_shape)
        if layer.weight not in new:
            continue
        w = tensor_to_array(new[layer.weight])
        shape_after, nonzero = list(w.shape), int(np.count_nonzero(w))
        density = nonzero / numel if numel else 1.0
        rows.append({
            "name": layer.name, "op": layer.op_type, "weight": layer.weight,
            "shape_before": list(layer.weight_shape), "shape_after": shape_after,
            "params_before": numel, "params_after": nonzero, "sparsity": 1.0 - density,
            "macs_before": layer.macs, "macs_after": None if layer.macs is None else int(round(layer.macs * density)),
        })
    return rows


def save_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report JSON atomically (temp file in the same directory, then rename)."""
    return write_json(report, path)
