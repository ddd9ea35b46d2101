"""Write trained weights back into the ONNX initializers they came from.

The search fine-tunes weights keyed by ONNX tensor name (the Executor's WeightStore);
before a rewrite, those values replace the original initializers. Shapes must match
exactly and each value is cast to its initializer's dtype, so nothing but the numbers
changes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import helper

from smart_onnx.errors import RewriteError
from smart_onnx.model import OnnxModel, iter_graphs
from smart_onnx.rewrite._util import replace_tensor
from smart_onnx.rewrite.passes import Pass, PassResult, run_passes

__all__ = ["SetWeights", "set_weights"]


class SetWeights(Pass):
    """Replace the named initializers' values (every graph that holds one of that name)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = {name: np.asarray(a) for name, a in arrays.items()}

    def requires(self, model: OnnxModel) -> None:
        found: dict[str, tuple[int, ...]] = {}
        for graph in iter_graphs(model.graph):
            for t in graph.initializer:
                if t.name in self.arrays:
                    found[t.name] = tuple(int(d) for d in t.dims)
        for name, array in self.arrays.items():
            if name not in found:
                raise RewriteError(f"cannot set weight {name!r}: the model has no initializer of that name")
            if tuple(array.shape) != found[name]:
                raise RewriteError(
                    f"cannot set weight {name!r}: the new value has shape {list(array.shape)}, "
                    f"the initializer {list(found[name])}"
                )

    def call(self, model: OnnxModel) -> PassResult:
        if not self.arrays:
            return PassResult(model, False)
        out = model.copy()
        for graph in iter_graphs(out.graph):
            for tensor in graph.initializer:
                if tensor.name in self.arrays:
                    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
                    replace_tensor(tensor, self.arrays[tensor.name].astype(dtype, copy=False))
        return PassResult(out, True)


def set_weights(model: OnnxModel, arrays: Mapping[str, np.ndarray], *, validate: bool = True) -> OnnxModel:
    """A copy of ``model`` whose initializers ``arrays`` names hold the given values (cast to their dtype).

    ``validate=False`` skips the full checker, for a model that is only run, never written (the
    masked original the rewrite is verified against): only values change, not the graph.

    Raises:
        RewriteError: a name is not an initializer or a shape differs; nothing is changed.
    """
    if not validate:
        out = SetWeights(arrays)(model).model
        return out if out is not model else model.copy()
    return run_passes(model, SetWeights(arrays))
