"""Drop ``value_info`` entries that a rewrite made stale.

The user's ``value_info`` annotations are kept where they still hold: each entry
survives if nothing in it contradicts shape inference of the rewritten graph (run
without the annotations): same element type and rank, and each fixed dim equal to
the inferred one. An entry with fixed dims that inference cannot confirm is
dropped too, so strict shape inference sees no contradiction.
"""

from __future__ import annotations

import logging

import onnx

from smart_onnx.model import OnnxModel, copy_proto
from smart_onnx.rewrite.passes import Pass, PassResult

__all__ = ["DropStaleValueInfo"]

log = logging.getLogger(__name__)


class DropStaleValueInfo(Pass):
    """Keep the main graph's ``value_info`` entries that shape inference still agrees with."""

    def call(self, model: OnnxModel) -> PassResult:
        if not model.graph.value_info:
            return PassResult(model, False)
        bare = copy_proto(model.proto)
        del bare.graph.value_info[:]
        try:
            inferred = onnx.shape_inference.infer_shapes(bare, data_prop=True)
        except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as e:  # ValueError: over 2 GiB
            # Validation reports the real problem; without inference no annotation can be trusted.
            log.debug("shape inference failed while refreshing value_info: %s", e)
            inferred = bare
        types = {v.name: v.type for v in inferred.graph.value_info}
        keep = [v for v in model.graph.value_info if _still_holds(v, types.get(v.name))]
        if len(keep) == len(model.graph.value_info):
            return PassResult(model, False)
        out = model.copy()
        stale = sorted({v.name for v in model.graph.value_info} - {v.name for v in keep})
        log.debug("dropping %d stale value_info entries: %s", len(stale), stale[:10])
        del out.graph.value_info[:]
        out.graph.value_info.extend(keep)
        return PassResult(out, True)


def _still_holds(value: onnx.ValueInfoProto, inferred: onnx.TypeProto | None) -> bool:
    """The entry says nothing that contradicts ``inferred`` (an unknown inferred type contradicts fixed dims)."""
    if not value.type.HasField("tensor_type"):
        return inferred is None or inferred == value.type
    mine = value.type.tensor_type
    if inferred is None or not inferred.HasField("tensor_type"):
        return inferred is None and not any(d.HasField("dim_value") for d in mine.shape.dim)
    theirs = inferred.tensor_type
    if mine.elem_type != theirs.elem_type:
        return False
    if not mine.HasField("shape") or not theirs.HasField("shape"):
        return not mine.HasField("shape")
    if len(mine.shape.dim) != len(theirs.shape.dim):
        return False
    return all(
        not a.HasField("dim_value") or (b.HasField("dim_value") and a.dim_value == b.dim_value)
        for a, b in zip(mine.shape.dim, theirs.shape.dim)
    )
