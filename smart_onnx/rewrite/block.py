"""Block mode: zero pruned blocks of weight tensors in place and record the pattern.

A :class:`BlockMask` is a boolean grid (True = keep) over a tensor cut into blocks
of ``block_shape``, both in the tensor's own axis order (Conv ``[O, I/g, kH, kW]``,
Gemm/MatMul as stored). Dims that the block shape does not divide end in a partial
block that covers the remainder, so the grid has ``ceil(dim / block)`` cells per axis.
Shapes and dtypes never change; the rewritten model computes exactly what the
original computes with those weights zeroed.

The pattern is stored in ``metadata_props["smart_onnx.block_sparsity"]`` as JSON::

    {"version": 1, "tensors": [{"tensor": "conv1.weight", "shape": [64, 32, 3, 3],
      "block_shape": [16, 8, 1, 1], "pruned_blocks": 72, "total_blocks": 144,
      "sparsity": 0.5}, ...]}

``sparsity`` counts elements (partial edge blocks are smaller); a later rewrite
merges its tensors into the entry, replacing records of the same tensor.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from smart_onnx.errors import ConstraintError, RewriteError
from smart_onnx.model import OnnxModel, iter_graphs, tensor_to_array
from smart_onnx.rewrite._util import replace_tensor
from smart_onnx.rewrite.passes import Pass, PassResult, run_passes
from smart_onnx.rewrite.sparse_storage import SPARSE_FORMATS, StoreSparse

__all__ = ["BLOCK_SPARSITY_KEY", "BlockMask", "ZeroBlocks", "apply_block_masks", "read_block_sparsity"]

log = logging.getLogger(__name__)

BLOCK_SPARSITY_KEY = "smart_onnx.block_sparsity"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BlockMask:
    """Which blocks of one tensor to keep.

    Attributes:
        grid: bool array, True = keep; one cell per block, ``ceil(dim / block)`` per axis.
        block_shape: block extent per tensor axis.
    """

    grid: np.ndarray
    block_shape: tuple[int, ...]

    @classmethod
    def coerce(cls, value: BlockMask | tuple[Any, Any]) -> BlockMask:
        """A BlockMask from itself or from a ``(grid, block_shape)`` pair."""
        if isinstance(value, BlockMask):
            return value
        grid, block = value
        return cls(np.asarray(grid), tuple(int(b) for b in block))

    def check(self, name: str, shape: tuple[int, ...]) -> None:
        """Raise ConstraintError unless this mask fits a tensor ``name`` of ``shape``."""
        if len(self.block_shape) != len(shape) or any(b < 1 for b in self.block_shape):
            raise ConstraintError(
                f"block shape {list(self.block_shape)} for tensor {name!r} must give one positive size per axis "
                f"of its shape {list(shape)}"
            )
        if self.grid.dtype != np.bool_:
            raise ConstraintError(f"the block mask for tensor {name!r} must be a bool array, got {self.grid.dtype}")
        expected = grid_shape(shape, self.block_shape)
        if tuple(self.grid.shape) != expected:
            raise ConstraintError(
                f"the block mask for tensor {name!r} has shape {list(self.grid.shape)}, but shape {list(shape)} "
                f"in blocks of {list(self.block_shape)} needs {list(expected)}"
            )

    def expand(self, shape: tuple[int, ...]) -> np.ndarray:
        """The element-level keep mask for a tensor of ``shape`` (partial edge blocks cut to size)."""
        out = self.grid
        for axis, (block, dim) in enumerate(zip(self.block_shape, shape)):
            out = np.repeat(out, block, axis=axis).take(np.arange(dim), axis=axis)
        return out


def grid_shape(shape: tuple[int, ...], block_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks per axis: ``ceil(dim / block)``."""
    return tuple(-(-d // b) for d, b in zip(shape, block_shape))


def _initializers(model: OnnxModel, name: str) -> list[onnx.TensorProto]:
    """Every initializer called ``name`` (a subgraph may hold its own)."""
    return [t for g in iter_graphs(model.graph) for t in g.initializer if t.name == name]


class ZeroBlocks(Pass):
    """Zero the pruned blocks of each masked initializer and record them in ``metadata_props``."""

    def __init__(self, masks: Mapping[str, BlockMask | tuple[Any, Any]]) -> None:
        self.masks = {name: BlockMask.coerce(m) for name, m in masks.items()}

    def requires(self, model: OnnxModel) -> None:
        for name, mask in self.masks.items():
            tensors = _initializers(model, name)
            if not tensors:
                raise ConstraintError(f"a block mask names tensor {name!r}, which is not an initializer of the model")
            for t in tensors:
                mask.check(name, tuple(int(d) for d in t.dims))

    def call(self, model: OnnxModel) -> PassResult:
        out = model.copy()
        records: dict[str, dict[str, Any]] = {}
        modified = False
        for name, mask in self.masks.items():
            for tensor in _initializers(out, name):
                array = tensor_to_array(tensor)
                keep = mask.expand(array.shape)
                if not keep.all():
                    replace_tensor(tensor, np.where(keep, array, np.zeros((), dtype=array.dtype)))
                    modified = True
                records[name] = _record(name, array.shape, mask, keep)
        _merge_metadata(out.proto, records)
        return PassResult(out, modified or bool(records))


def _record(name: str, shape: tuple[int, ...], mask: BlockMask, keep: np.ndarray) -> dict[str, Any]:
    total_blocks = int(mask.grid.size)
    pruned_blocks = total_blocks - int(np.count_nonzero(mask.grid))
    return {
        "tensor": name,
        "shape": [int(d) for d in shape],
        "block_shape": list(mask.block_shape),
        "pruned_blocks": pruned_blocks,
        "total_blocks": total_blocks,
        # Elements, not blocks: partial edge blocks are smaller than the others.
        "sparsity": float(1.0 - np.count_nonzero(keep) / keep.size) if keep.size else 0.0,
    }


def read_block_sparsity(proto: onnx.ModelProto) -> dict[str, dict[str, Any]]:
    """The per-tensor block records stored by :func:`apply_block_masks` ({} when there are none)."""
    for entry in proto.metadata_props:
        if entry.key == BLOCK_SPARSITY_KEY:
            try:
                data = json.loads(entry.value)
                return {r["tensor"]: r for r in data["tensors"]}
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed %s metadata entry", BLOCK_SPARSITY_KEY)
    return {}


def _merge_metadata(proto: onnx.ModelProto, records: Mapping[str, dict[str, Any]]) -> None:
    merged = {**read_block_sparsity(proto), **records}
    value = json.dumps({"version": _FORMAT_VERSION, "tensors": [merged[k] for k in sorted(merged)]})
    for entry in proto.metadata_props:
        if entry.key == BLOCK_SPARSITY_KEY:
            entry.value = value
            return
    proto.metadata_props.add(key=BLOCK_SPARSITY_KEY, value=value)


def apply_block_masks(
    model: OnnxModel,
    masks: Mapping[str, BlockMask | tuple[Any, Any]],
    *,
    sparse_format: str = "dense",
) -> OnnxModel:
    """Zero the pruned blocks of the named initializers and return the new model.

    Args:
        model: the normalised model; it is not modified.
        masks: initializer name -> :class:`BlockMask` (or a ``(grid, block_shape)`` pair).
        sparse_format: ``"dense"`` (default) keeps every weight a plain initializer, zeros
            included, as every ONNX consumer reads it; ``"coo"`` stores each masked tensor as
            a ``Constant`` node with a COO ``sparse_value`` (smaller on disk above about 2/3
            zeros for fp32; onnxruntime expands it, weight-reading compilers do not).

    Returns:
        A new model with the same graph, shapes and dtypes that passes the full ONNX
        checker (:func:`~smart_onnx.rewrite.passes.validate`).

    Raises:
        ConstraintError: a mask names an unknown tensor or does not fit its shape,
            ``sparse_format`` is unknown, or ``"coo"`` on a model it cannot be written
            for (opset below 11, or a result the full checker rejects); nothing is written.
        RewriteError: the result fails the ONNX checker or strict shape inference.
    """
    if sparse_format not in SPARSE_FORMATS:
        raise ConstraintError(f"sparse_format must be one of {list(SPARSE_FORMATS)}, got {sparse_format!r}")
    try:
        return run_passes(model, ZeroBlocks(masks), StoreSparse(list(masks), sparse_format))
    except RewriteError as e:
        if sparse_format != "coo":
            raise
        # The dense form of the same masks is what the caller can fall back to; say so plainly.
        run_passes(model, ZeroBlocks(masks))
        raise ConstraintError(
            f"sparse format 'coo' gives a model that {str(e).removeprefix('the rewritten model ')}; "
            "store the weights dense instead (the format every ONNX consumer reads)"
        ) from e
