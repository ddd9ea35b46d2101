"""Provenance: what every model smart-onnx writes says about itself in ``metadata_props``.

Keys (all strings, so any ONNX reader shows them; Netron lists them under metadata):

==============================  ==============================================================
``smart_onnx.version``          the smart-onnx version that wrote the model
``smart_onnx.mode``             ``block``, ``channel``, ``nm``, or ``none`` (not pruned)
``smart_onnx.sparsity_requested``  the requested sparsity (fraction of prunable weights, or of MACs)
``smart_onnx.sparsity_achieved``   the achieved sparsity, same unit
``smart_onnx.sparsity_budget``  what the sparsities count: ``params`` or ``macs``
``smart_onnx.target``           the hardware profile the model was made for (``none`` without one)
``smart_onnx.source_sha256``    SHA-256 of the source model file the chain started from
``smart_onnx.quantized``        ``int8`` (QDQ: INT8 weights and activations) or ``no``
==============================  ==============================================================

A quantized model keeps the pruning entries of the model it was quantized from, and the
source hash of the chain's first model (the dense original), so a pruned-then-quantized
file names the original it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import onnx

from smart_onnx.model import OnnxModel

__all__ = ["PROVENANCE_KEYS", "read_provenance", "source_sha256", "stamp_provenance"]

PREFIX = "smart_onnx."
PROVENANCE_KEYS = tuple(PREFIX + k for k in (
    "version", "mode", "sparsity_requested", "sparsity_achieved", "sparsity_budget", "target", "source_sha256",
    "quantized",
))


def source_sha256(model: OnnxModel) -> str:
    """SHA-256 of the file ``model`` was loaded from; of its serialised proto when it has no file.

    A model smart-onnx wrote carries the hash of the chain's first model, which is returned
    instead, so quantizing a pruned model still names the dense original.
    """
    recorded = read_provenance(model.proto).get(PREFIX + "source_sha256")
    if recorded:
        return recorded
    if model.path is not None and model.path.is_file():
        digest = hashlib.sha256()
        with open(model.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(model.proto.SerializeToString(deterministic=True)).hexdigest()


def read_provenance(proto: onnx.ModelProto) -> dict[str, str]:
    """The provenance entries of ``proto`` (those of :data:`PROVENANCE_KEYS` it has)."""
    return {e.key: e.value for e in proto.metadata_props if e.key in PROVENANCE_KEYS}


def stamp_provenance(proto: onnx.ModelProto, entries: Mapping[str, object]) -> None:
    """Set provenance entries (keys without the ``smart_onnx.`` prefix) in ``proto``'s ``metadata_props``.

    ``version`` is always written. Values become strings: floats with six decimals, None as
    ``none``. Other metadata entries are kept.
    """
    from smart_onnx import __version__

    values = {"version": __version__, **entries}
    for key, value in values.items():
        full = PREFIX + key
        if full not in PROVENANCE_KEYS:
            raise ValueError(f"unknown provenance key {key!r}")
        text = "none" if value is None else f"{value:.6f}" if isinstance(value, float) else str(value)
        for entry in proto.metadata_props:
            if entry.key == full:
                entry.value = text
                break
        else:
            proto.metadata_props.add(key=full, value=text)
