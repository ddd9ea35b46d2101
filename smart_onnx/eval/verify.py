"""Does the rewritten model compute what the masked model computes? onnxruntime against itself.

The rewrite (zeroed blocks, removed channels and heads) must not change what the model
computes beyond float rounding. Comparing it with the torch executor would mix two
questions: whether the rewrite is right, and how far torch and onnxruntime round apart on
this model (a decomposed LayerNorm computing ``E[x^2] - E[x]^2`` in float32 turns one
last-place difference into 1e-4 of its output). So the check runs onnxruntime on the
original graph with the hard mask written in as zeros and on the rewritten graph, and
judges their difference against a tolerance from the model's own float sensitivity: the
executor-vs-onnxruntime difference on the same batch and the same masked model, times
:data:`SENSITIVITY_FACTOR`, never below :data:`TOLERANCE_FLOOR`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smart_onnx.errors import RewriteError
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.model import OnnxModel

__all__ = ["SENSITIVITY_FACTOR", "TOLERANCE_FLOOR", "RewriteCheck", "check_rewrite", "relative_difference"]

log = logging.getLogger(__name__)

TOLERANCE_FLOOR = 1e-4  # relative to the largest output magnitude
# Removing channels reorders the sums of every layer after them; a model whose two float32
# implementations already differ by e gets differences of the same order from that.
SENSITIVITY_FACTOR = 10.0
# Beyond this the executor the mask was trained on is not the model onnxruntime runs.
_EXECUTOR_WARNING = 1e-2


@dataclass(frozen=True)
class RewriteCheck:
    """The verdict on one rewrite.

    Attributes:
        error: onnxruntime, rewritten vs masked model (relative to the largest output value).
        executor_error: the executor vs onnxruntime on the masked model, the model's float sensitivity.
        tolerance: what ``error`` may reach: max(floor, factor * executor_error).
    """

    error: float
    executor_error: float
    tolerance: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


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
    masked: OnnxModel, rewritten: Any, feeds: Mapping[str, np.ndarray], executor_outputs: Mapping[str, np.ndarray]
) -> RewriteCheck:
    """Run the masked and the rewritten model in onnxruntime on ``feeds`` and judge the difference.

    Args:
        masked: the original graph with the trained weights and the hard mask written in as zeros.
        rewritten: an onnxruntime session of the rewritten model (or the model itself).
        feeds: one batch of inputs.
        executor_outputs: the executor's outputs for ``feeds`` under the same hard mask.

    Returns:
        The errors and the tolerance applied.

    Raises:
        RewriteError: the rewritten model differs by more than the tolerance (or gives NaN where
            the masked model does not); nothing should be written.
    """
    session = rewritten if hasattr(rewritten, "run") else make_session(rewritten)
    reference = run_model(make_session(masked), feeds)
    executor_error = relative_difference(reference, executor_outputs)
    if not executor_error <= _EXECUTOR_WARNING:
        log.warning("the executor and onnxruntime differ by %.2g (relative) on this model: the mask was trained on "
                    "the executor's values", executor_error)
    sensitivity = executor_error if np.isfinite(executor_error) else 0.0
    tolerance = max(TOLERANCE_FLOOR, SENSITIVITY_FACTOR * sensitivity)
    error = relative_difference(reference, run_model(session, feeds))
    if not error <= tolerance:
        raise RewriteError(
            f"the rewritten model differs from the masked original in onnxruntime by {error:.2g} (relative), more "
            f"than the {tolerance:.2g} this model's float rounding explains (executor vs onnxruntime: "
            f"{executor_error:.2g}); nothing was written (this is a smart-onnx bug: please report it)"
        )
    return RewriteCheck(error, executor_error, tolerance)
