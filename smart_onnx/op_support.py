"""Which nodes the executor can run, answered without importing it (it needs torch).

The executor registers a handler per (domain, op, since_version); ``op_table.json`` beside this
module is that registry written out as data (``python -m tools.gen_op_table``; a test keeps them
equal), and the resolution here is the registry's own: the model's opset picks the op's
since_version through ``onnx.defs``, and a version nobody registered is unsupported.
``smart-onnx inspect`` uses it, so inspecting a model starts without torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnx.defs

from smart_onnx.model import OnnxModel, iter_graphs

__all__ = ["SUPPORTED", "unsupported_nodes"]


def _read_table() -> dict[tuple[str, str], tuple[int, ...]]:
    ops = json.loads((Path(__file__).parent / "op_table.json").read_text())["ops"]
    return {(domain, op): tuple(versions) for domain, table in ops.items() for op, versions in table.items()}


# (domain, op_type) -> the since_versions the executor has handlers for.
SUPPORTED = _read_table()


def _canonical(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _describe(node: onnx.NodeProto) -> str:
    name = node.name or f"<unnamed producing {list(node.output)}>"
    return f"node {name!r} ({node.op_type})"


def _since_version(op_type: str, opset: int, domain: str) -> int | None:
    try:
        return onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain=domain).since_version
    except onnx.defs.SchemaError:
        return None


def _problem(node: onnx.NodeProto, opsets: dict[str, int]) -> str | None:
    domain = _canonical(node.domain)
    if domain not in opsets:
        return f"{_describe(node)} uses domain {domain!r}, which the model does not import"
    opset = opsets[domain]
    versions = SUPPORTED.get((domain, node.op_type))
    label = node.op_type + (f" (domain {domain})" if domain else "")
    where = f"node {node.name!r}" if node.name else f"the node producing {list(node.output)}"
    if not versions:
        return f"op {label} at {where} (opset {opset}) is not supported by smart-onnx"
    since = _since_version(node.op_type, opset, domain)
    if since is None:  # custom domain without ONNX schema: newest registered version <= opset
        candidates = [v for v in versions if v <= opset]
        since = candidates[-1] if candidates else None
    if since is None or since not in versions:
        return (f"op {label} at {where}: opset {opset} selects version {since}, but smart-onnx supports only "
                f"versions {list(versions)}")
    return None


def unsupported_nodes(model: OnnxModel) -> list[str]:
    """One message per node (subgraphs included) the executor cannot run; the executor's own messages."""
    opsets = {_canonical(o.domain): int(o.version) for o in model.proto.opset_import}
    opsets.setdefault("", 1)
    return [p for graph in iter_graphs(model.graph) for node in graph.node if (p := _problem(node, opsets))]
