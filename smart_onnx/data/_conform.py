"""Check arrays against a model's inputs and cast them to the input's dtype.

Every check raises ``DataError`` with one sentence naming the input, what the model
expects, what was found, and where the data came from (``where``: a file or folder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from smart_onnx.data._mapped import release
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

__all__ = ["LABEL_KEY", "check_lengths", "conform_array", "conform_labels", "conform_mapping", "format_shape"]

LABEL_KEY = "label"


def format_shape(shape: Sequence[int | str]) -> str:
    """A shape as ``[N, 3, 224, 224]``, symbolic dims by name."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _is_fixed(dim: int | str) -> bool:
    return isinstance(dim, int) and dim > 0


def _check_shape(array: np.ndarray, spec: InputSpec, where: str) -> None:
    what = f"input {spec.name!r} in {where}"
    if spec.rank == 0:
        raise DataError(
            f"{what} cannot be batched: the model declares it a scalar (rank 0), and calibration data needs a "
            "leading batch axis"
        )
    if array.ndim != spec.rank:
        raise DataError(
            f"{what} has shape {format_shape(array.shape)}, but the model expects rank {spec.rank} "
            f"{format_shape(spec.shape)} with the samples along axis 0"
        )
    # Axis 0 is the sample axis: the data may hold any number of samples even when
    # the model fixes its batch size (batching is the consumer's business).
    for axis in range(1, spec.rank):
        dim = spec.shape[axis]
        if _is_fixed(dim) and array.shape[axis] != dim:
            raise DataError(
                f"{what} has shape {format_shape(array.shape)}, but the model expects "
                f"{format_shape(spec.shape)} (axis {axis} must be {dim})"
            )
    if array.shape[0] == 0:
        raise DataError(f"{what} holds no samples (shape {format_shape(array.shape)})")


# Whole-array checks run in chunks of this many bytes, so a memory-mapped set is never held at once.
_CHUNK_BYTES = 64 * 2**20


def _count_nonfinite(array: np.ndarray) -> int:
    if array.ndim == 0:
        return int(not np.isfinite(array))
    rows = max(1, _CHUNK_BYTES // max(1, array[:1].nbytes))
    bad = 0
    for i in range(0, len(array), rows):
        part = array[i:i + rows]
        bad += int(part.size - np.count_nonzero(np.isfinite(part)))
        release(array)  # a memory-mapped file's pages, read once, leave this process's resident set
    return bad


def _check_castable(array: np.ndarray, spec: InputSpec, where: str) -> None:
    what = f"input {spec.name!r} in {where}"
    src, dst = array.dtype, np.dtype(spec.dtype)
    if src.kind not in "biuf" or dst.kind not in "biuf":
        raise DataError(f"{what} has dtype {src}, which cannot be cast to the model's {dst}")
    if src.kind == "f" and (bad := _count_nonfinite(array)):
        raise DataError(f"{what} has {bad} NaN or infinite values out of {array.size}")
    if dst.kind == "b":
        if src.kind != "b" and not np.isin(array, (0, 1)).all():
            raise DataError(f"{what} has values other than 0 and 1, but the model's input is bool")
    elif dst.kind in "iu" and src.kind != "b":
        if src.kind == "f" and (frac := int(np.count_nonzero(array != np.round(array)))):
            raise DataError(f"{what} has {frac} non-integer values, but the model's input is {dst}")
        info = np.iinfo(dst)
        lo, hi = array.min(), array.max()
        if lo < info.min or hi > info.max:
            raise DataError(f"{what} has values in [{lo}, {hi}], outside the range of the model's {dst}")


def conform_array(array: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """``array`` checked against ``spec`` and cast to ``spec.dtype``.

    Args:
        array: the data, samples along axis 0.
        spec: the graph input it feeds.
        where: the file or folder it came from, for error messages.

    Returns:
        The array in ``spec.dtype`` (the same object when no cast is needed).

    Raises:
        DataError: wrong rank, a fixed dim that differs, no samples, NaN/inf, or
            values the model's dtype cannot hold exactly (fractions for an integer
            input, out-of-range integers, float overflow).
    """
    array = np.asanyarray(array)  # a memory map stays one (see _mapped.py)
    _check_shape(array, spec, where)
    _check_castable(array, spec, where)
    with np.errstate(over="ignore"):  # overflow is reported below, with the input's name
        out = array.astype(spec.dtype, copy=False)
    if out is not array and isinstance(out, np.memmap):
        out = out.view(np.ndarray)  # cast into memory: no longer backed by the file
    if out.dtype.kind == "f" and (bad := _count_nonfinite(out)):
        raise DataError(
            f"input {spec.name!r} in {where} has {bad} values that overflow the model's {out.dtype} "
            f"(found {array.dtype} data)"
        )
    return out


def conform_labels(labels: np.ndarray, num_samples: int, where: str) -> np.ndarray:
    """Labels checked to be one non-negative integer class per sample, as int64.

    Raises:
        DataError: wrong shape or length, non-numeric, fractional, NaN or negative values.
    """
    labels = np.asarray(labels)
    if labels.shape != (num_samples,):
        raise DataError(
            f"labels in {where} have shape {format_shape(labels.shape)}, expected [{num_samples}]: "
            "one integer class per sample"
        )
    if labels.dtype.kind not in "iuf":
        raise DataError(f"labels in {where} have dtype {labels.dtype}, expected integer class indices")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
        raise DataError(f"labels in {where} have non-integer values, expected integer class indices")
    if labels.size and labels.min() < 0:
        raise DataError(f"labels in {where} have negative values (min {labels.min()}), expected class indices >= 0")
    return labels.astype(np.int64)


def check_lengths(arrays: Mapping[str, np.ndarray], labels: np.ndarray | None, where: str) -> int:
    """The common number of samples of ``arrays`` (and ``labels``).

    Raises:
        DataError: there are no arrays, or they hold different numbers of samples.
    """
    if not arrays:
        raise DataError(f"no input arrays in {where}: the model has no runtime inputs to feed")
    lengths = {name: len(a) for name, a in arrays.items()}
    if labels is not None:
        lengths[LABEL_KEY] = len(labels)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
        raise DataError(f"arrays in {where} hold different numbers of samples ({listed}); they must all be equal")
    return next(iter(lengths.values()))


def conform_mapping(
    data: Mapping[str, np.ndarray], inputs: Sequence[InputSpec], labels: np.ndarray | None, where: str
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Arrays keyed by input name checked and cast; labels checked.

    Args:
        data: arrays keyed by graph-input name, samples along axis 0; a ``label``
            entry is taken as the labels when no input is called ``label``.
        inputs: the model's runtime inputs.
        labels: labels given separately (overrides nothing: both at once is an error).
        where: the file or source, for error messages.

    Returns:
        ``(arrays in model input order, int64 labels or None)``.

    Raises:
        DataError: keys that do not match the input names, or any check of
            `conform_array`, `conform_labels` and `check_lengths`.
    """
    names = [s.name for s in inputs]
    label_key = LABEL_KEY if LABEL_KEY not in names else None
    keys = set(data)
    if keys - {label_key} != set(names):
        hint = f" (plus an optional {LABEL_KEY!r})" if label_key else ""
        raise DataError(f"{where} has arrays {sorted(keys)}, but the model's inputs are {names}{hint}")
    if label_key in keys:
        if labels is not None:
            raise DataError(f"{where} has a {LABEL_KEY!r} array and labels were also given separately")
        labels = data[label_key]
    arrays = {spec.name: conform_array(data[spec.name], spec, where) for spec in inputs}
    num = check_lengths(arrays, None, where)
    return arrays, None if labels is None else conform_labels(labels, num, where)
