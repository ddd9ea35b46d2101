"""onnxruntime side: run models, compare a candidate with its reference, measure latency.

This is the only module of smart-onnx that imports onnxruntime.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from smart_onnx._atomic import from_fields
from smart_onnx.errors import DataError, ModelLoadError
from smart_onnx.eval.fidelity import OutputComparison, OutputMetrics
from smart_onnx.graph import OutputInfo, infer_output_roles
from smart_onnx.model import MAX_IR_VERSION, OnnxModel, is_large, write_weights_apart

__all__ = [
    "LATENCY_REPEATS",
    "LATENCY_WARMUP",
    "NO_LATENCY",
    "EvalReport",
    "LatencyResult",
    "LatencySettings",
    "evaluate",
    "make_session",
    "measure_latency",
    "run_model",
    "tensor_runner",
]

log = logging.getLogger(__name__)

# A latency is the median of LATENCY_REPEATS timed runs after LATENCY_WARMUP untimed ones (every caller's default).
LATENCY_WARMUP = 3
LATENCY_REPEATS = 20


def make_session(
    model: OnnxModel | onnx.ModelProto | str | Path, *, threads: int | None = None, spin: bool = True
) -> ort.InferenceSession:
    """An onnxruntime CPU session (IR version clamped; large models, see ``model.is_large``, go through a
    temporary file). ``spin=False`` stops its idle threads from spinning between runs, for a session that takes
    turns with torch on the same cores.

    Raises:
        ModelLoadError: onnxruntime refuses the model (message from onnxruntime, first line).
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    try:
        if isinstance(model, (str, Path)):
            return ort.InferenceSession(str(model), opts, providers=providers)
        proto = model.proto if isinstance(model, OnnxModel) else model
        if not is_large(proto):
            return ort.InferenceSession(_serialized(proto), opts, providers=providers)
        with tempfile.TemporaryDirectory() as tmp:
            # A session made from the model's bytes held them beside its own copy of the weights, at its peak and
            # after (BERT-base-size: 1254 and 990 MiB above the model); from a file with the weights apart, 346 and
            # 339. onnxruntime has read the weights when the session exists: the folder may go.
            path = write_weights_apart(proto, Path(tmp) / "model.onnx", min(proto.ir_version, MAX_IR_VERSION))
            return ort.InferenceSession(str(path), opts, providers=providers)
    except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidGraph,
            ort.capi.onnxruntime_pybind11_state.InvalidArgument, RuntimeError) as e:
        raise ModelLoadError(f"onnxruntime cannot load the model: {str(e).strip().splitlines()[0][:300]}") from e


def _serialized(proto: onnx.ModelProto) -> bytes:
    """``proto``'s bytes, followed (where its IR version is above what onnxruntime reads) by a message setting only
    the IR version: a field given twice takes its last value when protobuf parses, so no copy of the model message
    is made; the bytes are joined only where that tail is needed."""
    data = proto.SerializeToString()
    if proto.ir_version > MAX_IR_VERSION:
        data += onnx.ModelProto(ir_version=MAX_IR_VERSION).SerializeToString()
    return data


def run_model(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs by name for one batch."""
    names = [o.name for o in session.get_outputs()]
    try:
        values = session.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})
    except Exception as e:  # onnxruntime raises its own exception types for shape/type mismatches
        raise DataError(f"onnxruntime could not run the data: {str(e).strip().splitlines()[0][:300]}") from e
    return dict(zip(names, values))


def tensor_runner(
    model: OnnxModel, tensors: Sequence[str] = (), *, threads: int | None = None
) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function running ``model`` in onnxruntime on a batch of feeds, returning its outputs and the inner
    ``tensors`` (by name) besides.

    Raises:
        ModelLoadError: onnxruntime refuses the model.
    """
    graph = model.proto.graph
    shown = {o.name for o in graph.output}
    extra = [t for t in dict.fromkeys(tensors) if t not in shown]
    # Added to the model's own message while the session is made, then taken off again: a copy with them would
    # hold the weights twice (make_session passes a large model to onnxruntime as a file, without copying it).
    # A name alone: onnxruntime infers the type and shape of an output that a node produces.
    graph.output.extend(onnx.ValueInfoProto(name=t) for t in extra)
    try:
        # Its threads would spin on after each run while torch computes the step on the same cores: a torch
        # product after a run took 17 % longer at two threads on two cores (0.351 against 0.297 s).
        session = make_session(model.proto, threads=threads, spin=False)
    finally:
        del graph.output[len(graph.output) - len(extra):]
    return lambda feeds: run_model(session, feeds)


# --------------------------------------------------------------------------- latency

_ORT_DEFAULT = "onnxruntime default"  # how the reports write threads=None


@dataclass(frozen=True)
class LatencySettings:
    """How an evaluation measures latency, and how many onnxruntime threads its sessions use.

    Attributes:
        batches: the batch sizes latency is measured at (the first evaluation batch, tiled or cut to each);
            (): none. Repeats are dropped, the order kept.
        threads: onnxruntime intra-op threads of the sessions the evaluation builds, timed or not
            (None: onnxruntime's default; a :class:`LatencyResult` reports it as the CPU count).
        warmup: untimed runs before each measurement.
        repeats: timed runs per measurement; the median is reported.
    """

    batches: tuple[int, ...] = ()
    threads: int | None = None
    warmup: int = LATENCY_WARMUP
    repeats: int = LATENCY_REPEATS

    def __post_init__(self) -> None:
        object.__setattr__(self, "batches", tuple(dict.fromkeys(int(b) for b in self.batches)))

    @property
    def threads_shown(self) -> int | str:
        """The threads as the reports write them: the count, or ``"onnxruntime default"``."""
        return self.threads or _ORT_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        """The report's ``latency_settings``."""
        return {"batches": list(self.batches), "warmup": self.warmup, "repeats": self.repeats,
                "threads": self.threads_shown}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencySettings:
        """The inverse of :meth:`to_dict`."""
        threads = data["threads"]
        return cls(tuple(data["batches"]), None if threads == _ORT_DEFAULT else int(threads), data["warmup"],
                   data["repeats"])


NO_LATENCY = LatencySettings()  # no latency measured; the sessions run with onnxruntime's threads


@dataclass
class LatencyResult:
    batch: int
    median_ms: float
    p90_ms: float
    repeats: int
    threads: int


def measure_latency(
    session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], *, warmup: int = LATENCY_WARMUP,
    repeats: int = LATENCY_REPEATS,
    threads: int | None = None,
) -> LatencyResult:
    """Median wall time of ``session.run`` on ``feeds`` after warm-up."""
    for _ in range(warmup):
        run_model(session, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_model(session, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    batch = len(next(iter(feeds.values()))) if feeds else 1
    return LatencyResult(
        batch=batch,
        median_ms=statistics.median(times),
        p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
        repeats=repeats,
        threads=threads or os.cpu_count() or 1,
    )


# --------------------------------------------------------------------------- evaluate


@dataclass
class EvalReport:
    """Reference vs candidate on held-out samples: metrics per output (by role), latency."""

    samples: int
    outputs: list[OutputMetrics]
    latency: dict[str, dict[str, LatencyResult]] = field(default_factory=dict)

    def _first(self, attribute: str) -> float | None:
        values = [getattr(m, attribute) for m in self.outputs if getattr(m, attribute) is not None]
        return values[0] if values else None

    @property
    def top1_agreement(self) -> float | None:
        """The lowest top-1 agreement over the class outputs (None without one)."""
        values = [m.top1_agreement for m in self.outputs if m.role == "class" and m.top1_agreement is not None]
        return min(values) if values else None

    @property
    def accuracy(self) -> float | None:
        return self._first("accuracy")

    @property
    def reference_accuracy(self) -> float | None:
        return self._first("reference_accuracy")

    def to_dict(self) -> dict:
        return {"samples": self.samples, "outputs": [m.to_dict() for m in self.outputs],
                "latency": {b: {k: asdict(v) for k, v in lat.items()} for b, lat in self.latency.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalReport:
        """The inverse of :meth:`to_dict` (each output's ``fidelity`` is derived)."""
        latency = {b: {k: from_fields(LatencyResult, v) for k, v in lat.items()} for b, lat in data["latency"].items()}
        return cls(data["samples"], [from_fields(OutputMetrics, m) for m in data["outputs"]], latency)


_Runnable = OnnxModel | onnx.ModelProto | ort.InferenceSession


def _session(model: _Runnable, threads: int | None) -> ort.InferenceSession:
    return model if isinstance(model, ort.InferenceSession) else make_session(model, threads=threads)


def evaluate(
    reference: _Runnable,
    candidate: _Runnable,
    batches: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray | None]],
    *,
    latency: LatencySettings = NO_LATENCY,
    outputs: Sequence[OutputInfo] | None = None,
    label_output: str | None = None,
) -> EvalReport:
    """Run both models over ``batches`` of (feeds, labels or None) and compare every output by its role.

    Args:
        reference: the dense model, or a session of it (used as it is, with its own threads).
        candidate: the pruned model, or a session of it (e.g. the one that verified the export).
        batches: (feeds, labels or None) per batch.
        latency: the batch sizes at which to also measure the median latency of both models, and the
            threads of the sessions built here (a session given runs with its own).
        outputs: the roles of the outputs (None: inferred from ``reference``'s graph; every
            output is regression when ``reference`` is a session).
        label_output: the class output the labels belong to.
    """
    if outputs is None:
        outputs = _roles_of(reference)
    ref_sess, cand_sess = _session(reference, latency.threads), _session(candidate, latency.threads)
    comparison = OutputComparison(outputs, label_output)
    first: Mapping[str, np.ndarray] | None = None
    samples = 0
    for feeds, y in batches:  # compared batch by batch: memory does not grow with the evaluation samples
        first = first or feeds
        samples += len(next(iter(feeds.values())))
        comparison.add(run_model(ref_sess, feeds), run_model(cand_sess, feeds), None if y is None else np.asarray(y))
    if first is None:
        raise DataError("no evaluation samples")
    report = EvalReport(samples=samples, outputs=comparison.metrics())
    for b in latency.batches:
        feeds_b = {k: _resize_batch(v, b) for k, v in first.items()}
        report.latency[str(b)] = {
            name: measure_latency(sess, feeds_b, warmup=latency.warmup, repeats=latency.repeats,
                                  threads=latency.threads)
            for name, sess in (("reference", ref_sess), ("candidate", cand_sess))
        }
    return report


def _roles_of(model: _Runnable) -> list[OutputInfo]:
    if isinstance(model, ort.InferenceSession):
        return []  # no graph to read: OutputComparison treats every output as regression
    return infer_output_roles(model if isinstance(model, OnnxModel) else OnnxModel(model))


def _resize_batch(array: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(array))
    return np.concatenate([array] * reps)[:batch]
