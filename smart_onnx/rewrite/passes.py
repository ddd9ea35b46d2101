"""Pass infrastructure for the ONNX rewriter (the contract of ir-py's ``_pass_infra``).

A pass is a callable ``pass_(model) -> PassResult(model, modified)``. It may
override :meth:`Pass.requires` (checked before it runs) and :meth:`Pass.ensures`
(checked after). :class:`Sequential` runs passes in order; when one fails, its
error names the passes that already ran. :class:`Validate` is the final gate of
every rewrite: ``onnx.checker`` with ``full_check`` and strict shape inference.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import onnx

from smart_onnx.errors import RewriteError, SmartOnnxError
from smart_onnx.model import OnnxModel, is_large, write_weights_apart

__all__ = ["Pass", "PassResult", "Sequential", "Validate", "run_passes", "validate"]

log = logging.getLogger(__name__)

_STRICT = {"check_type": True, "strict_mode": True, "data_prop": True}
_SUB_BYTE_TYPES = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
                   if hasattr(onnx.TensorProto, name)}


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the (possibly new) model and whether anything changed."""

    model: OnnxModel
    modified: bool


class Pass(abc.ABC):
    """One rewrite step. Subclasses implement :meth:`call`; callers call the instance."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, model: OnnxModel) -> None:  # noqa: B027  (optional hook)
        """Raise a :class:`SmartOnnxError` if ``model`` is not a valid input for this pass."""

    def ensures(self, model: OnnxModel) -> None:  # noqa: B027  (optional hook)
        """Raise a :class:`SmartOnnxError` if this pass produced an invalid ``model``."""

    @abc.abstractmethod
    def call(self, model: OnnxModel) -> PassResult:
        """Do the rewrite. Must not modify ``model`` in place."""

    def __call__(self, model: OnnxModel) -> PassResult:
        self.requires(model)
        result = self.call(model)
        self.ensures(result.model)
        return result


class Sequential(Pass):
    """Passes run one after the other; ``modified`` is true if any of them modified the model."""

    def __init__(self, *passes: Pass) -> None:
        self.passes = passes

    @property
    def name(self) -> str:
        return "Sequential(" + ", ".join(p.name for p in self.passes) + ")"

    def call(self, model: OnnxModel) -> PassResult:
        modified = False
        done: list[str] = []
        for pass_ in self.passes:
            try:
                result = pass_(model)
            except SmartOnnxError as e:
                # Same class, so callers still catch ConstraintError etc.; the message gains the history.
                after = f" (after {', '.join(done)})" if done else " (the first pass)"
                raise type(e)(f"{str(e).rstrip('.')}; in rewrite pass {pass_.name}{after}.") from e
            log.debug("rewrite pass %s: modified=%s", pass_.name, result.modified)
            model, modified = result.model, modified or result.modified
            done.append(pass_.name)
        return PassResult(model, modified)


class Validate(Pass):
    """Checks the model and changes nothing: ``onnx.checker`` (full) plus strict shape inference."""

    def call(self, model: OnnxModel) -> PassResult:
        validate(model)
        return PassResult(model, False)


def run_passes(model: OnnxModel, *passes: Pass) -> OnnxModel:
    """Run ``passes`` then :class:`Validate`; a failed check says whether the input already failed it.

    Raises:
        RewriteError: the result fails validation (the message says when the given model fails it too).
        SmartOnnxError: whatever a pass raises (ConstraintError for impossible requests).
    """
    try:
        out = Sequential(*passes, Validate())(model).model
        # Callers own the result: never hand back the caller's own object.
        return out if out is not model else model.copy()
    except RewriteError as e:
        try:
            validate(model, subject="the model given to the rewriter")
        except RewriteError as before:
            raise before from e
        raise


def validate(model: OnnxModel | onnx.ModelProto, subject: str = "the rewritten model") -> None:
    """Raise :class:`RewriteError` unless ``model`` passes the full checker and strict shape inference.

    The model is checked exactly as it would be written: a ``sparse_initializer``
    feeding a standard op fails (onnx's shape inference types it as a sparse tensor,
    which no standard op accepts), so no rewrite may leave one behind.

    Args:
        model: the model to check.
        subject: how the error message names the model.

    Raises:
        RewriteError: the checker or shape inference rejects the model.
    """
    proto = model.proto if isinstance(model, OnnxModel) else model
    if is_large(proto):  # in memory the checks held about four copies of the model (serialised, parsed, inferred)
        _validate_on_disk(proto, subject)
        return
    _run_check(subject, "the full ONNX checker", lambda: onnx.checker.check_model(proto, full_check=True))
    _run_check(subject, "strict shape inference", lambda: onnx.shape_inference.infer_shapes(proto, **_STRICT))


def _validate_on_disk(proto: onnx.ModelProto, subject: str) -> None:
    """The same checks for a large model: the checkers read it from a file, its weights in another beside it.

    ``proto`` is left as it is (``onnx.save_model`` with external data would move the caller's weights into
    the temporary file and clear them from the message).
    """
    with tempfile.TemporaryDirectory(prefix="smart_onnx_validate_") as tmp:
        path = str(write_weights_apart(proto, os.path.join(tmp, "model.onnx")))
        # The sizes from the written file: its weights' lengths are in it, without reading each tensor's bytes again.
        for tensor in onnx.load(path, load_external_data=False).graph.initializer:
            _check_raw_size(tensor, subject)
        _run_check(subject, "the full ONNX checker", lambda: onnx.checker.check_model(path, full_check=True))
        inferred = os.path.join(tmp, "inferred.onnx")
        _run_check(
            subject, "strict shape inference", lambda: onnx.shape_inference.infer_shapes_path(path, inferred, **_STRICT)
        )


def _check_raw_size(tensor: onnx.TensorProto, subject: str) -> None:
    """The in-memory checker's test of raw data against the declared shape, which it does not make of external
    data (its ``length`` is what the tensor holds; sub-byte types, packed several to a byte, are left to it)."""
    length = next((entry.value for entry in tensor.external_data if entry.key == "length"), None)
    if (length is None and not tensor.HasField("raw_data")) or tensor.data_type in _SUB_BYTE_TYPES:
        return
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return
    needed, held = math.prod(tensor.dims) * itemsize, int(length) if length is not None else len(tensor.raw_data)
    if held < needed:
        raise RewriteError(f"{subject} fails the full ONNX checker: initializer {tensor.name!r} holds "
                           f"{held} bytes of raw data, its shape and type need {needed}")


def _run_check(subject: str, what: str, check: Callable[[], object]) -> None:
    try:
        check()
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RewriteError(f"{subject} fails {what}: {first[:300]}") from e
