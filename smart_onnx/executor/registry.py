"""The op registry: (domain, op_type, since_version) -> handler class.

Handlers register for the exact ``since_version``s someone has checked. A node is
resolved by mapping the model's opset to the op's ``since_version`` with
``onnx.defs``; a version nobody registered raises an error listing the ones that are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import onnx
import onnx.defs

from smart_onnx.errors import InternalError, UnsupportedOpError

if TYPE_CHECKING:
    from smart_onnx.executor.base import OpModule

__all__ = ["register", "resolve", "supported_ops"]

_HANDLERS: dict[tuple[str, str, int], type[OpModule]] = {}
T = TypeVar("T", bound="type[OpModule]")


def _canonical(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(op_type: str, *, versions: tuple[int, ...], domain: str = "") -> Callable[[T], T]:
    """Class decorator: register a handler for ``op_type`` at the given since_versions."""

    def deco(cls: T) -> T:
        for v in versions:
            key = (_canonical(domain), op_type, v)
            if key in _HANDLERS:
                raise InternalError(f"duplicate handler for {op_type} v{v} (domain {domain!r})")
            _HANDLERS[key] = cls
        return cls

    return deco


def since_version(op_type: str, opset: int, domain: str = "") -> int | None:
    """The since_version of ``op_type`` in effect at ``opset``; None if ONNX has no schema."""
    try:
        return onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain=_canonical(domain)).since_version
    except onnx.defs.SchemaError:
        return None


def resolve(node: onnx.NodeProto, opset: int) -> tuple[type[OpModule], int]:
    """Handler class and since_version for ``node`` in a model of the given opset.

    Raises:
        UnsupportedOpError: no handler for this op, or none for this opset of it.
    """
    domain = _canonical(node.domain)
    versions = sorted(v for (d, op, v) in _HANDLERS if d == domain and op == node.op_type)
    label = f"{node.op_type}" + (f" (domain {domain})" if domain else "")
    where = f"node {node.name!r}" if node.name else f"the node producing {list(node.output)}"
    if not versions:
        raise UnsupportedOpError(f"op {label} at {where} (opset {opset}) is not supported by smart-onnx")
    since = since_version(node.op_type, opset, domain)
    if since is None:  # custom domain without ONNX schema: newest registered version <= opset
        candidates = [v for v in versions if v <= opset]
        since = candidates[-1] if candidates else None
    if since is None or (domain, node.op_type, since) not in _HANDLERS:
        raise UnsupportedOpError(
            f"op {label} at {where}: opset {opset} selects version {since}, but smart-onnx "
            f"supports only versions {versions}"
        )
    return _HANDLERS[(domain, node.op_type, since)], since


def supported_ops() -> dict[tuple[str, str], tuple[int, ...]]:
    """(domain, op_type) -> registered since_versions."""
    out: dict[tuple[str, str], list[int]] = {}
    for d, op, v in _HANDLERS:
        out.setdefault((d, op), []).append(v)
    return {k: tuple(sorted(v)) for k, v in sorted(out.items())}
