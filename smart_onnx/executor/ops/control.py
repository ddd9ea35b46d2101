"""Control flow: If and Loop, running their subgraphs as GraphModules.

Subgraph nodes may read any value of the enclosing scopes; each run gets a copy of the
caller's environment, so values a branch frees or produces never leak out of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import onnx
import torch
from torch import nn

from smart_onnx.errors import GraphError
from smart_onnx.executor.base import NodeContext, OpModule
from smart_onnx.executor.ops.shape import Op
from smart_onnx.executor.registry import register

__all__: list[str] = []

_VERSIONS = (11, 13, 16, 19, 21, 23, 24, 25)


def _subgraph(ctx: NodeContext, name: str) -> nn.Module:
    graph = ctx.attrs.get(name)
    if not isinstance(graph, onnx.GraphProto):
        raise GraphError(f"{ctx.describe()} has no graph attribute {name!r}")
    if ctx.build_subgraph is None:
        raise GraphError(f"{ctx.describe()} has a subgraph, which this executor cannot build")
    return ctx.build_subgraph(graph)


@register("If", versions=_VERSIONS)
class If(Op):
    """ONNX If: runs ``then_branch`` or ``else_branch`` on a copy of the enclosing scope."""

    needs_scope = True

    def __init__(self, then_branch: nn.Module, else_branch: nn.Module) -> None:
        super().__init__()
        self.then_branch, self.else_branch = then_branch, else_branch

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        return cls(_subgraph(ctx, "then_branch"), _subgraph(ctx, "else_branch"))

    def forward(
        self, cond: torch.Tensor, *, scope: dict[str, torch.Tensor], transforms: Mapping[str, Any] | None = None
    ) -> tuple[torch.Tensor, ...]:
        if cond.numel() != 1:
            raise RuntimeError(f"If condition has {cond.numel()} elements, expected one")
        branch = self.then_branch if bool(cond.reshape(())) else self.else_branch
        return tuple(branch.run(dict(scope), transforms))


@register("Loop", versions=_VERSIONS)
class Loop(Op):
    """ONNX Loop: ``body(iteration, cond, *carried) -> (cond, *carried, *scan)`` repeated while
    the iteration count is below ``M`` (when given) and ``cond`` holds (when given).

    Scan outputs are stacked along a new leading axis. Without an input ``cond`` the body's
    condition output is ignored, as the spec says.
    """

    needs_scope = True

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    @classmethod
    def create(cls, ctx: NodeContext) -> OpModule:
        return cls(_subgraph(ctx, "body"))

    def forward(
        self,
        trip_count: torch.Tensor | None,
        cond: torch.Tensor | None,
        *initial: torch.Tensor,
        scope: dict[str, torch.Tensor],
        transforms: Mapping[str, Any] | None = None,
    ) -> tuple[torch.Tensor, ...]:
        if trip_count is None and cond is None:
            raise RuntimeError("Loop has neither a trip count M nor a condition, so it would never end")
        limit = None if trip_count is None else int(trip_count.reshape(()))
        device = next((t.device for t in (trip_count, cond, *initial) if t is not None), torch.device("cpu"))
        go = True if cond is None else bool(cond.reshape(()))
        carried, scans = list(initial), None
        i = 0
        while go and (limit is None or i < limit):
            env = dict(scope)
            state = [torch.tensor(i, dtype=torch.int64, device=device), torch.tensor(go, device=device), *carried]
            env.update(zip(self.body.input_names, state))
            outs = self.body.run(env, transforms)
            carried = outs[1 : 1 + len(initial)]
            scans = [[] for _ in outs[1 + len(initial) :]] if scans is None else scans
            for column, value in zip(scans, outs[1 + len(initial) :]):
                column.append(value)
            go = go if cond is None else bool(outs[0].reshape(()))
            i += 1
        n_scan = len(self.body.output_names) - 1 - len(initial)
        stacked = [torch.stack(c) for c in scans] if scans else [torch.empty(0, device=device)] * n_scan
        return (*carried, *stacked)
