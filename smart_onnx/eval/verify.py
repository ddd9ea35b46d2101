"""Does the rewritten model compute what the masked model computes? onnxruntime against itself.

The rewrite (zeroed blocks, removed channels and heads) must not change what the model
computes beyond float rounding. Comparing it with the torch executor would mix two
questions: whether the rewrite is right, and how far torch and onnxruntime round apart on
this model (a decomposed LayerNorm computing ``E[x^2] - E[x]^2`` in float32 turns one
last-place difference into 1e-4 of its output). So the check compares onnxruntime on the
original graph with the hard mask written in as zeros (the caller's reference) and on the
rewritten graph, and judges their difference against a tolerance from the model's own float sensitivity: the
executor-vs-onnxruntime difference on the same batch and the same masked model, or, where the
caller evaluated the masked model in float64 too, how far onnxruntime's float32 value is from
that, whichever is larger; times :data:`SENSITIVITY_FACTOR`, never below :data:`TOLERANCE_FLOOR`.
The float64 reading matters where the executor rounds exactly as onnxruntime does (its sums follow
onnxruntime's order) while the model still cancels digits: removing channels from a LayerNorm that
computes ``E[x^2] - E[x]^2`` sums fewer terms in another order, which moves its output by as much
as float32 evaluation itself does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from smart_onnx._atomic import Record
from smart_onnx.errors import RewriteError
from smart_onnx.eval.ort import make_session, run_model

__all__ = ["SENSITIVITY_FACTOR", "TOLERANCE_FLOOR", "RewriteCheck", "check_rewrite", "relative_difference"]

log = logging.getLogger(__name__)

TOLERANCE_FLOOR = 1e-4  # relative to the largest output magnitude
# Removing channels reorders the sums of every layer after them; a model whose two float32
# implementations already differ by e gets differences of the same order from that.
SENSITIVITY_FACTOR = 10.0
# Beyond this the executor the mask was trained on is not the model onnxruntime runs.
_EXECUTOR_WARNING = 1e-2


@dataclass(frozen=True)
class RewriteCheck(Record):
    """The verdict on one rewrite.

    Attributes:
        error: onnxruntime, rewritten vs masked model (relative to the largest output value).
        executor_error: the executor vs onnxruntime on the masked model, the model's float sensitivity.
        tolerance: what ``error`` may reach: max(floor, factor * max(executor_error, float32_error)).
        float32_error: onnxruntime's float32 value of the masked model vs its float64 value in the executor
            (None where that evaluation was not possible, and in reports written before it was made: left out
            of the JSON then, so those read back byte for byte).
    """

    error: float
    executor_error: float
    tolerance: float
    float32_error: float | None = None

    omit_if_none = ("float32_error",)


def relative_difference(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> float:
    """Worst max-abs difference over the float outputs, each relative to its largest value; NaN wins."""
    worst = 0.0
    for name, e in expected.items():
        if not np.issubdtype(e.dtype, np.floating):
            continue
        e64 = e.astype(np.float64)
        finite = np.abs(e64[np.isfinite(e64)])
        scale = float(finite.max()) if finite.size else 1.0
        err = float(np.max(np.abs(np.asarray(got[name], np.float64) - e64), initial=0.0)) / (scale or 1.0)
        worst = err if not err <= worst else worst  # a NaN error must win, not vanish in max()
    return worst


def check_rewrite(
    reference: Mapping[str, np.ndarray], rewritten: Any, feeds: Mapping[str, np.ndarray],
    executor_outputs: Mapping[str, np.ndarray], float64_outputs: Mapping[str, np.ndarray] | None = None,
) -> RewriteCheck:
    """Run the rewritten model in onnxruntime on ``feeds`` and judge its difference from the masked model's.

    Args:
        reference: onnxruntime's outputs for ``feeds`` of the original graph with the trained weights and the hard
            mask written in as zeros (the caller runs it, so its copy of the model and its session can be gone
            before the rewritten model's session is built).
        rewritten: an onnxruntime session of the rewritten model (or the model itself).
        feeds: one batch of inputs.
        executor_outputs: the executor's outputs for ``feeds`` under the same hard mask.
        float64_outputs: the same in float64, where the executor could run the model so.

    Returns:
        The errors and the tolerance applied.

    Raises:
        RewriteError: the rewritten model differs by more than the tolerance (or gives NaN where
            the masked model does not); nothing should be written.
    """
    executor_error = relative_difference(reference, executor_outputs)
    if not executor_error <= _EXECUTOR_WARNING:
        log.warning("the executor and onnxruntime differ by %.2g (relative) on this model: the mask was trained on "
                    "the executor's values", executor_error)
    float32_error = None if float64_outputs is None else relative_difference(float64_outputs, reference)
    readings = [e for e in (executor_error, float32_error) if e is not None and np.isfinite(e)]
    tolerance = max(TOLERANCE_FLOOR, SENSITIVITY_FACTOR * max(readings, default=0.0))
    session = rewritten if hasattr(rewritten, "run") else make_session(rewritten)
    error = relative_difference(reference, run_model(session, feeds))
    if not error <= tolerance:
        float32 = "" if float32_error is None else f", float32 vs float64: {float32_error:.2g}"
        raise RewriteError(
            f"the rewritten model differs from the masked original in onnxruntime by {error:.2g} (relative), more "
            f"than the {tolerance:.2g} this model's float rounding explains (executor vs onnxruntime: "
            f"{executor_error:.2g}{float32}); nothing was written (this is a smart-onnx bug: please report it)"
        )
    return RewriteCheck(error, executor_error, tolerance, float32_error)
