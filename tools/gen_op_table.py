"""Regenerate ``smart_onnx/op_table.json`` from the executor's op registry.

``smart-onnx inspect`` reports the ops the executor cannot run without importing the
executor (which needs torch), so it reads this table (``smart_onnx.op_support``);
``tests/cli/test_startup.py`` fails when the table and the registry differ. The table is data,
written as JSON (docs/design.md, "Adding an op").

    python -m tools.gen_op_table
"""

from __future__ import annotations

import json
from pathlib import Path

TABLE = Path(__file__).resolve().parents[1] / "smart_onnx" / "op_table.json"


def render() -> str:
    """``{"generated_by": ..., "ops": {domain: {op_type: [since_version, ...]}}}``, one op a line."""
    from smart_onnx.executor import supported_ops

    domains: dict[str, dict[str, tuple[int, ...]]] = {}
    for (domain, op), versions in sorted(supported_ops().items()):
        domains.setdefault(domain, {})[op] = versions
    lines = ["{", f'  "generated_by": {json.dumps("python -m tools.gen_op_table; do not edit")},', '  "ops": {']
    for i, (domain, ops) in enumerate(domains.items()):
        lines.append(f"    {json.dumps(domain)}: {{")
        lines += [f"      {json.dumps(op)}: {json.dumps(list(versions))}" + ("," if j < len(ops) - 1 else "")
                  for j, (op, versions) in enumerate(ops.items())]
        lines.append("    }" + ("," if i < len(domains) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:  # pragma: no cover - manual tool
    TABLE.write_text(render())
    print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
