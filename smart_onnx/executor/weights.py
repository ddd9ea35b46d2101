"""WeightStore: a graph's initializers as torch tensors keyed by ONNX name.

Floating-point initializers used by differentiable inputs become ``nn.Parameter``s;
everything else (integer tensors, shape/config data) stays a buffer. torch forbids
'.' in parameter names, so each ONNX name gets a safe key; the map is kept both ways.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["WeightStore"]


class WeightStore(nn.Module):
    """Initializers by ONNX name; ``parameters()`` yields exactly the trainable weights."""

    def __init__(self, arrays: Mapping[str, np.ndarray], trainable: Iterable[str],
                 shared: Mapping[str, torch.Tensor] | None = None) -> None:
        """``shared`` tensors join as buffers sharing their storage (never trained here)."""
        super().__init__()
        self.params = nn.ParameterDict()
        self._name_to_key: dict[str, str] = {}
        self._key_to_name: dict[str, str] = {}
        train = set(trainable)
        for name, array in arrays.items():
            key = self._make_key(name)
            # numpy_helper arrays are fresh but may be read-only views of the proto's bytes: copy only then.
            tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
            if name in train and tensor.is_floating_point():
                self.params[key] = nn.Parameter(tensor)
            else:
                self.register_buffer(f"c_{key}", tensor, persistent=True)
        for name, tensor in (shared or {}).items():
            self.register_buffer(f"c_{self._make_key(name)}", tensor.detach(), persistent=True)

    def _make_key(self, name: str) -> str:
        key = re.sub(r"\W", "_", name) or "_"
        base, n = key, 1
        while key in self._key_to_name:
            n += 1
            key = f"{base}_{n}"
        self._name_to_key[name] = key
        self._key_to_name[key] = name
        return key

    def __contains__(self, name: object) -> bool:
        return name in self._name_to_key

    def get(self, name: str) -> torch.Tensor:
        """The tensor for ONNX name ``name`` (a Parameter if trainable)."""
        key = self._name_to_key[name]
        if key in self.params:
            return self.params[key]
        return getattr(self, f"c_{key}")

    def is_parameter(self, name: str) -> bool:
        return self._name_to_key.get(name, "") in self.params

    def parameter_names(self) -> list[str]:
        """ONNX names of the trainable weights."""
        return [self._key_to_name[k] for k in self.params]

    def named_weights(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(ONNX name, Parameter) pairs."""
        for key, p in self.params.items():
            yield self._key_to_name[key], p

    def names(self) -> list[str]:
        return list(self._name_to_key)

    def to_arrays(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Current values as numpy (for writing back into the ONNX graph)."""
        wanted = self.names() if names is None else list(names)
        return {n: self.get(n).detach().cpu().numpy() for n in wanted}
