"""The whole ``prune`` job as one library call: analysis -> search -> export -> verify -> eval -> report.

Each stage is its own package; this module only wires them together and times them,
so scripts and tests get exactly what the CLI does.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smart_onnx.data import Dataset
from smart_onnx.errors import ModelLoadError, SmartOnnxError
from smart_onnx.eval.compare import LayerRow, layer_totals
from smart_onnx.eval.fidelity import judge_fidelity
from smart_onnx.eval.ort import LatencySettings, evaluate, make_session, run_model, tensor_runner
from smart_onnx.eval.verify import check_rewrite
from smart_onnx.executor import Executor
from smart_onnx.graph import Analysis, analyze, infer_output_roles, label_output
from smart_onnx.hw import Profile, check_model, record_original
from smart_onnx.model import OnnxModel, normalized, tensor_to_array
from smart_onnx.modes import MODES, ModeRequest, build_mode, check_request
from smart_onnx.provenance import read_provenance, source_sha256, stamp_provenance
from smart_onnx.report import FrozenGroup, PruneReport
from smart_onnx.rewrite import set_weights, weigh_statistics
from smart_onnx.search import DenseRunner, SearchConfig, StepInfo, run_search
from smart_onnx.search.distributed import is_main

__all__ = ["MODES", "PruneOptions", "PruneOutcome", "prune", "save_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneOptions:
    """What ``smart-onnx prune`` takes besides the model and data."""

    mode: str | None = None  # None: the target's mode (block without a target)
    block: tuple[int, ...] | None = None  # None: the target's block per op (16x8x1x1 without a target)
    nm: tuple[int, int] | None = None  # None: the target's pattern (2:4 without a target)
    # None: no target, so nothing constrains the search or checks the result. The CLI's --target defaults to
    # hw.DEFAULT_PROFILE (npu-block) instead; DEFAULT_BLOCK and DEFAULT_NM are that profile's patterns, so the
    # two defaults prune the same units (tests/modes checks it).
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
    report: PruneReport


def _input_shapes(data: Dataset) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes from the data resolve every symbolic dim (batch -> 1)."""
    return {name: (1, *a.shape[1:]) for name, a in data.arrays.items()}


def prune(
    model: OnnxModel,
    calibration: Dataset,
    holdout: Dataset | None,
    options: PruneOptions,
    *,
    progress: Callable[[StepInfo], None] | None = None,
    command: str | None = None,
) -> PruneOutcome | None:
    """Prune ``model`` with the SMART search (or a baseline) and verify the result.

    Under torchrun (a torch.distributed process group, see :mod:`smart_onnx.search.distributed`)
    every rank calls this alike and the search and fine-tune run data-parallel; only rank 0
    goes on to rewrite, verify and evaluate.

    Args:
        model: the loaded model (not modified).
        calibration: data the masks and weights are trained on.
        holdout: data for the evaluation in the report (None: no evaluation).
        options: mode, block / N:M pattern, search settings (sparsity included: None takes an
            N:M pattern's and is refused in the other modes).
        progress: called after each optimisation step.
        command: the command line, recorded in the report.

    Returns:
        The pruned model and the report (``report.to_dict()`` is the JSON ``prune`` writes); None on
        the ranks other than 0 of a data-parallel run.

    Raises:
        ConstraintError: impossible sparsity or mode, nothing prunable, a bad output-role override.
        DataError: labels that several class outputs could take, or a label output that is not a class output.
        RewriteError: the rewritten model does not reproduce the masked original in onnxruntime.
    """
    cfg = options.search
    request = ModeRequest(mode=options.mode, block=options.block, nm=options.nm, target=options.target,
                          sparsity=cfg.sparsity, budget=cfg.budget)
    check_request(request)  # before any model work: an unknown mode, one the target cannot run, no sparsity
    outputs = infer_output_roles(model, options.output_roles)
    have_labels = calibration.labels is not None or (holdout is not None and holdout.labels is not None)
    labelled = label_output(outputs, options.label_output, have_labels)
    if have_labels and labelled is None:
        log.warning("the data has labels but the model has no class output: the labels are not used")
    start = time.perf_counter()
    executor = Executor(model)  # first: an unsupported op is the error to report, before any analysis
    # Shapes that static inference leaves unknown: one executor pass, not onnx's numpy evaluator.
    analysis = analyze(model, _input_shapes(calibration), measure_shapes=executor.value_shapes)
    mode = build_mode(request, analysis, model)
    # What the search aims for, of its own units: the request (of all prunable weights) converted where frozen
    # groups or layers outside the target hold the rest; N:M: the pattern's.
    cfg = replace(cfg, sparsity=mode.sparsity)
    analysis_seconds = time.perf_counter() - start

    result = run_search(executor, mode.ranking, calibration, cfg, progress=progress, outputs=outputs,
                        label_output=labelled, dense_runner=_dense_runner(model))
    seconds = replace(result.seconds, analysis=analysis_seconds)  # the search timed its own stages
    cfg = result.config  # as run: the batch and step counts it chose
    if not is_main():  # data-parallel: one process writes, the others only trained
        return None

    start = time.perf_counter()
    trained = set_weights(model, result.weights)
    result.weights = {}  # the trained model holds them now: one copy fewer at the export's peak
    hard = result.keep.float()
    feeds = _verify_feeds(holdout or calibration)
    masked = _masked_outputs(executor, mode.space.transforms(hard), mode.space.statistics(hard), trained, feeds)
    # The export holds copies of the model (the trained, the rewritten, onnxruntime's sessions): each is made when
    # needed and let go when done, the executor's weights first, so that few exist at once (BERT-base: the
    # masked model's session was built beside the rewritten one's, the executor, and four protos, 5990 MiB).
    del executor, hard
    pruned = mode.rewrite(trained, result.keep, sparse_format=options.sparse_format)
    del trained
    session = make_session(pruned)  # one onnxruntime session: export check here, eval below
    export_check = check_rewrite(masked.reference, session, feeds, masked.executor, masked.float64)
    del masked
    if options.target is not None:
        record_original(pruned.proto, model)
    seconds.export = time.perf_counter() - start

    report = PruneReport(
        command=command, seed=cfg.seed, mode=mode.name, method=cfg.method, budget=cfg.budget,
        target=options.target.name if options.target else None, **mode.pattern(),
        search=cfg,
        steps=result.plan, training=result.training,
        sparsity=mode.sparsity_summary(result.keep),
        layers=_layer_report(analysis, pruned),
        frozen_groups=[FrozenGroup(g.id, list(g.layers), g.channels, g.frozen) for g in analysis.frozen_groups],
        outputs=list(outputs), label_output=labelled,
        export_relative_error=export_check.error, export_check=export_check, history=result.history,
        seconds=seconds,
    )
    if options.target is not None:
        start = time.perf_counter()
        report.check = check_model(normalized(pruned), options.target, reference=model,
                                   input_shapes=_input_shapes(calibration), rules=mode.checker_rules)
        seconds.check = time.perf_counter() - start
    start = time.perf_counter()
    if holdout is not None:
        batches = ((b.inputs, b.labels) for b in holdout.batches(cfg.batch_size))  # read as evaluated
        latency = LatencySettings((1, min(cfg.batch_size, len(holdout))) if options.latency else ())
        report.eval = evaluate(model, session, batches, latency=latency, outputs=outputs, label_output=labelled)
        report.fidelity = judge_fidelity(report.eval.outputs, options.min_fidelity)
    seconds.eval = time.perf_counter() - start
    report.totals = layer_totals(report.layers)
    sp = report.sparsity
    stamp_provenance(pruned.proto, {
        "mode": mode.name, "sparsity_requested": mode.requested, "sparsity_budget": cfg.budget,
        "sparsity_achieved": sp.achieved_macs if cfg.budget == "macs" else sp.achieved_params,
        "target": report.target, "source_sha256": source_sha256(model), "quantized": "no"})
    report.provenance = read_provenance(pruned.proto)
    return PruneOutcome(pruned, report)


def _dense_runner(model: OnnxModel) -> DenseRunner:
    """The search's dense teacher in onnxruntime, with as many threads as torch; where onnxruntime refuses the
    model the search keeps its torch copy (the evaluation will then say why)."""
    def build(tensors: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] | None:
        try:
            return tensor_runner(model, tensors, threads=torch.get_num_threads())
        except ModelLoadError as e:
            log.info("the dense teacher runs in torch: %s", e)
            return None

    return build


def _verify_feeds(data: Dataset) -> dict[str, np.ndarray]:
    """The batch the rewrite is checked on: the first 8 samples."""
    sample = data.take(min(8, len(data)))
    return {k: np.ascontiguousarray(v) for k, v in sample.arrays.items()}


@dataclass(frozen=True)
class _MaskedOutputs:
    """The original graph's outputs on the check's batch with the trained weights and the hard mask written in."""

    reference: dict[str, np.ndarray]  # onnxruntime's: what the rewritten model must reproduce
    executor: dict[str, np.ndarray]  # the executor's: the model's float sensitivity (see eval/verify.py)
    float64: dict[str, np.ndarray] | None  # the executor's in float64, where the graph runs so


def _masked_outputs(executor: Executor, transforms: Mapping[Any, Any], statistics: Mapping[str, torch.Tensor],
                    trained: OnnxModel, feeds: Mapping[str, np.ndarray]) -> _MaskedOutputs:
    """The masked model's outputs: the mask written in as zeros (and the means of LayerNorms over pruned channels
    weighted by it: ``statistics``). The masked copy of the model and its onnxruntime session exist only in here,
    before the rewritten model's, so the export never holds both."""
    executor.to("cpu")
    with torch.no_grad():
        expected = {k: v.numpy() for k, v in executor({k: torch.from_numpy(v) for k, v in feeds.items()},
                                                       transforms=transforms).items()}
    wide = _in_float64(executor, transforms, feeds)
    with torch.no_grad():
        zeroed = {n: fn(executor.weights.get(n)).detach().cpu().numpy() for n, fn in transforms.items()
                  if isinstance(n, str)}
    weighed = {node: w.detach().cpu().numpy() for node, w in statistics.items()}
    masked = weigh_statistics(set_weights(trained, zeroed, validate=False), weighed)
    del zeroed  # copied into the masked model
    return _MaskedOutputs(run_model(make_session(masked), feeds), expected, wide)


def _in_float64(executor: Executor, transforms: Mapping[Any, Any], feeds: Mapping[str, np.ndarray]
                ) -> dict[str, np.ndarray] | None:
    """The masked model's outputs evaluated in float64 (what float32 rounding is measured against), or None
    where the graph pins float32 somewhere (a Cast, a typed constant) and the executor cannot mix them."""
    wide = {k: torch.from_numpy(v).double() if np.issubdtype(v.dtype, np.floating) else torch.from_numpy(v)
            for k, v in feeds.items()}
    tensors = [t for t in (*executor.parameters(), *executor.buffers()) if t.is_floating_point()]
    dtypes = [t.dtype for t in tensors]
    try:
        for t in tensors:  # in place, and back below: float32 -> float64 -> float32 is exact
            t.data = t.data.double()
        with torch.no_grad():
            return {k: v.numpy() for k, v in executor(wide, transforms=transforms).items()}
    except SmartOnnxError as e:
        log.info("no float64 evaluation of the masked model (%s); the rewrite check reads executor vs onnxruntime",
                 e)
        return None
    finally:
        for t, dtype in zip(tensors, dtypes):
            t.data = t.data.to(dtype)


def _layer_report(analysis: Analysis, after: OnnxModel) -> list[LayerRow]:
    """Per prunable layer: weight shape before/after, nonzeros, sparsity (of the original size), MACs after."""
    new = {t.name: t for t in normalized(after).graph.initializer}  # COO Constants as weights
    rows = []
    for layer in analysis.layers:
        numel = math.prod(layer.weight_shape)
        if layer.weight not in new:
            continue
        w = tensor_to_array(new[layer.weight])
        shape_after, nonzero = list(w.shape), int(np.count_nonzero(w))
        density = nonzero / numel if numel else 1.0
        rows.append(LayerRow(
            name=layer.name, op=layer.op_type, weight=layer.weight, shape_before=list(layer.weight_shape),
            shape_after=shape_after, params_before=numel, params_after=nonzero, sparsity=1.0 - density,
            macs_before=layer.macs, macs_after=None if layer.macs is None else int(round(layer.macs * density)),
        ))
    return rows


def save_report(report: PruneReport, path: str | os.PathLike[str]) -> Path:
    """Write the report JSON atomically (temp file in the same directory, then rename)."""
    return report.save(path)
