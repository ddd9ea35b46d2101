"""SMART's differentiable top-k under costs, and the exact (hard) top-k it tends to.

The soft mask is ``p = sigmoid(m / tau + t)`` with the scalar ``t`` chosen so that
``sum(c * p) == K``. ``t`` is found on detached float64 values by safeguarded Newton
(bisection whenever a Newton step leaves the bracket or stops shrinking fast enough) to
a relative budget error of about 1e-13, or to the last bit of ``t`` when ``|m / tau|`` is
so large (~1e6 and beyond) that float64 cannot place ``t`` more finely (then ~1e-9);
the gradient is the exact implicit one, O(N) in time and memory::

    v = p (1 - p)
    dL/dm_j = (1 / tau) * (g_j v_j - c_j v_j * sum(g v) / sum(c v))

Every function works on a trailing unit axis: ``[N]`` for one global ranking, or
``[G, M]`` for N:M groups, each row with its own ``t``. Rows whose budget is ``<= 0``
are all zeros and rows whose budget is ``>= sum(c)`` are all ones, both with zero
gradient. A row whose units are all saturated (``sum(c v) == 0`` in float64) gets the
plain ``g v / tau`` gradient, which is then zero too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from smart_onnx.errors import ConstraintError, InternalError

__all__ = [
    "SoftTopK",
    "hard_topk",
    "hard_topk_grouped",
    "soft_topk",
    "soft_topk_grouped",
    "solve_threshold",
]

logger = logging.getLogger(__name__)

# sigmoid(-40) ~ 4e-18: at the bracket ends every unit is saturated to float64 precision.
_MARGIN = 40.0
_MAX_ITER = 300
_RTOL = 1e-13
_EPS = torch.finfo(torch.float64).eps
# Rows are solved and differentiated this many units at a time (see SoftTopK): each float64 work tensor is
# then at most 8 MiB, where N:M over a ResNet-50 (6.4M rows of 4) would otherwise allocate 194 MiB ones.
_CHUNK_UNITS = 1 << 20


def _budget_rows(budget: float | torch.Tensor, rows: int, device: torch.device) -> torch.Tensor:
    b = torch.as_tensor(budget, dtype=torch.float64, device=device).detach()
    if b.numel() not in (1, rows):
        raise InternalError(f"soft top-k budget has {b.numel()} values for {rows} rows; give one or one per row")
    return b.reshape(-1).expand(rows).clone()


def _cost_sums(s: torch.Tensor, costs: torch.Tensor | None) -> torch.Tensor:
    # einsum contracts without an N-sized temporary.
    return s.sum(-1) if costs is None else torch.einsum("gn,gn->g", s, costs)


def _float64_rows(costs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # Copies only when costs broadcast over leading rows; a plain [N] stays a view.
    return costs.detach().to(like.device, torch.float64).expand(like.shape).reshape(-1, like.shape[-1])


def solve_threshold(z: torch.Tensor, costs: torch.Tensor | None, budget: float | torch.Tensor) -> torch.Tensor:
    """The offset ``t`` per row with ``sum(c * sigmoid(z + t)) == budget``.

    Args:
        z: Logits ``m / tau``, shape ``[G, N]``, float64, finite.
        costs: Positive costs ``[G, N]`` (float64), or None for unit costs.
        budget: One budget, or one per row.

    Returns:
        float64 ``[G]``; ``-inf`` for rows with budget ``<= 0``, ``+inf`` for rows whose
        budget covers every unit.
    """
    rows = z.shape[0]
    budgets = _budget_rows(budget, rows, z.device)
    totals = z.new_full((rows,), z.shape[1]) if costs is None else costs.sum(-1)
    k = budgets  # k, z and the other per-row state below hold the rows still iterated; budgets and totals all rows
    lo = -z.amax(-1) - _MARGIN
    hi = -z.amin(-1) + _MARGIN
    tol = torch.maximum(_RTOL * k.abs(), 8 * _EPS * totals)
    t = 0.5 * (lo + hi)
    step = torch.full_like(t, float("inf"))
    step_before = step.clone()
    done = (k <= 0) | (k >= totals)
    solved, index = t.clone(), torch.arange(rows, device=z.device)  # every row's t; the rows still iterated
    for _ in range(_MAX_ITER):
        s = torch.add(z, t[:, None]).sigmoid_()
        f = _cost_sums(s, costs) - k
        df = _cost_sums(s.addcmul_(s, s, value=-1), costs)  # s (1 - s), in place
        collapsed = (hi - lo) <= 4 * _EPS * torch.maximum(torch.maximum(lo.abs(), hi.abs()), torch.ones_like(t))
        done = done | (f.abs() <= tol) | collapsed
        if bool(done.all()):
            break
        lo = torch.where(f < 0, t, lo)
        hi = torch.where(f > 0, t, hi)
        newton = t - f / torch.where(df > 0, df, torch.ones_like(df))
        # rtsafe's safeguard: bisect when Newton leaves the bracket or its steps stop halving.
        use_newton = (df > 0) & (newton > lo) & (newton < hi) & ((newton - t).abs() <= 0.5 * step_before.abs())
        t_next = torch.where(use_newton, newton, 0.5 * (lo + hi))
        step_before, step = step, t_next - t
        t = torch.where(done, t, t_next)
        if 4 * int(done.sum()) >= len(done):
            # A row once done never changes again: when they are a quarter of the rows iterated, they leave with
            # their t, so an iteration costs the rows still open, not all of them (N:M on a ResNet-50 ranks 6.4M
            # rows of 4 at once; 14% are open after three iterations at tau 1, 35% after eight at tau 0.01).
            solved[index[done]] = t[done]
            rest = (~done).nonzero().flatten()
            index, z, k, lo, hi, tol, t, step, step_before, done = (
                x.index_select(0, rest) for x in (index, z, k, lo, hi, tol, t, step, step_before, done))
            costs = None if costs is None else costs.index_select(0, rest)
    else:
        logger.warning("soft top-k threshold not converged after %d iterations (rtol %g)", _MAX_ITER, _RTOL)
    solved[index] = t
    solved = torch.where(budgets <= 0, torch.full_like(solved, -float("inf")), solved)
    return torch.where(budgets >= totals, torch.full_like(solved, float("inf")), solved)


def _check_inputs(scores: torch.Tensor, costs: torch.Tensor | None, tau: float) -> None:
    if not scores.is_floating_point() or scores.dim() < 1:
        raise InternalError(f"soft top-k needs floating [..., N] scores, got {scores.dtype}{tuple(scores.shape)}")
    if not (tau > 0 and tau < float("inf")):
        raise InternalError(f"soft top-k temperature must be positive and finite, got {tau}")
    if not bool(torch.isfinite(scores).all()):
        raise InternalError("soft top-k scores contain NaN or inf (did the mask optimizer diverge?)")
    if costs is not None:
        if costs.dim() > scores.dim() or any(c not in (1, s) for c, s in zip(costs.shape[::-1], scores.shape[::-1])):
            raise InternalError(f"soft top-k costs {tuple(costs.shape)} do not broadcast to {tuple(scores.shape)}")
        if not bool(((costs > 0) & torch.isfinite(costs)).all()):
            raise InternalError("soft top-k costs must be positive and finite")


def _row_chunks(rows: int, n: int) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges of at most :data:`_CHUNK_UNITS` units (at least one row each)."""
    step = max(1, _CHUNK_UNITS // max(n, 1))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def _mask_rows(z: torch.Tensor, costs: torch.Tensor | None, budget: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, t)`` of rows of logits ``z`` (float64, consumed in place)."""
    t = z.new_zeros(z.shape[0]) if z.shape[1] == 0 else solve_threshold(z, costs, budget)
    return z.add_(t[:, None]).sigmoid_(), t


def _grad_rows(
    scores: torch.Tensor, costs: torch.Tensor | None, t: torch.Tensor, tau: float, grad_p: torch.Tensor
) -> torch.Tensor:
    """float64 ``dL/dm`` of rows of ``scores`` from ``dL/dp`` (the implicit gradient of the module docstring)."""
    x = torch.div(scores.to(torch.float64), tau).add_(t[:, None])
    # sigmoid(x) * sigmoid(-x) keeps v accurate in both tails, where p * (1 - p) rounds to 0.
    v = torch.sigmoid(x).mul_(x.neg_().sigmoid_())
    del x
    gv = grad_p.to(torch.float64) * v
    cv = v if costs is None else v.mul_(costs)
    s_cv = cv.sum(-1, keepdim=True)
    positive = s_cv > 0
    corr = torch.where(positive, gv.sum(-1, keepdim=True) / torch.where(positive, s_cv, 1.0), 0.0)
    return gv.sub_(cv.mul_(corr)).div_(tau)


class SoftTopK(torch.autograd.Function):
    """``p = sigmoid(m / tau + t)`` with ``sum(c * p) == K`` along the last axis; exact gradient in ``m``.

    ``apply(scores, costs, budget, tau)``: scores ``[..., N]`` (the only differentiable input),
    costs broadcastable to scores or None for unit costs, budget a float or one value per
    leading row, tau a positive float. Returns p in the dtype of scores.

    Rows are independent, so both passes run over chunks of rows (:data:`_CHUNK_UNITS` units) into
    one output: the float64 work tensors are a chunk's, whatever the number of rows. Only the scores
    (the caller's tensor) and one float64 ``t`` per row are kept for backward, which recomputes
    ``p`` from them.
    """

    @staticmethod
    def forward(ctx, scores, costs, budget, tau):  # noqa: D102 (documented on the class)
        _check_inputs(scores, costs, tau)
        lead, n = scores.shape[:-1], scores.shape[-1]
        flat = scores.detach().reshape(-1, n)
        c = None if costs is None else _float64_rows(costs, scores)
        k = _budget_rows(budget, flat.shape[0], flat.device)
        p = flat.new_empty(flat.shape)
        t = flat.new_empty(flat.shape[0], dtype=torch.float64)
        for a, b in _row_chunks(flat.shape[0], n):
            p[a:b], t[a:b] = _mask_rows(torch.div(flat[a:b].to(torch.float64), tau), None if c is None else c[a:b],
                                        k[a:b])
        ctx.save_for_backward(scores, costs, t)
        ctx.tau = tau
        return p.reshape(*lead, n)

    @staticmethod
    def backward(ctx, grad_p):  # noqa: D102
        scores, costs, t = ctx.saved_tensors
        n = scores.shape[-1]
        flat, g = scores.detach().reshape(-1, n), grad_p.reshape(-1, n)
        c = None if costs is None else _float64_rows(costs, scores)
        grad = flat.new_empty(flat.shape)
        for a, b in _row_chunks(flat.shape[0], n):
            grad[a:b] = _grad_rows(flat[a:b], None if c is None else c[a:b], t[a:b], ctx.tau, g[a:b])
        return grad.reshape(scores.shape), None, None, None


def soft_topk(
    scores: torch.Tensor, costs: torch.Tensor | None, budget: float | torch.Tensor, tau: float
) -> torch.Tensor:
    """The soft top-K mask of ``scores`` under ``costs`` (SMART's operator).

    Args:
        scores: Learnable scores ``m``, shape ``[N]`` (or ``[..., N]``: one ranking per row).
        costs: Cost per unit (> 0), broadcastable to ``scores``; None means unit costs.
        budget: ``K``, the total cost to keep (``(1 - sparsity) * sum(costs)``); one value or one per row.
        tau: Temperature (> 0); smaller is closer to the hard top-k.

    Returns:
        ``p`` in ``(0, 1)``, same shape and dtype as ``scores``, with ``sum(costs * p) == budget``.
    """
    return SoftTopK.apply(scores, costs, budget, tau)


def soft_topk_grouped(scores: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """N:M soft masks: per row of ``scores [G, M]``, unit costs, ``sum(p) == k`` with its own ``t``.

    Args:
        scores: ``[G, M]`` scores (for N:M, typically the weights' magnitudes).
        k: Units kept per row (the N of N:M), ``0 <= k <= M``.
        tau: Temperature (> 0).

    Returns:
        ``[G, M]`` soft mask in the dtype of ``scores``.
    """
    if scores.dim() != 2 or not 0 <= k <= scores.shape[1]:
        raise InternalError(f"soft_topk_grouped needs [G, M] scores and 0 <= k <= M, got {tuple(scores.shape)}, k={k}")
    return SoftTopK.apply(scores, None, float(k), tau)


def _group_minimum(
    order: torch.Tensor,
    c: torch.Tensor,
    group: torch.Tensor,
    min_keep: torch.Tensor | Sequence[float],
    forced: torch.Tensor,
) -> torch.Tensor:
    """Units kept so that each group keeps at least ``min_keep[g]`` cost: its best free units first."""
    g = torch.as_tensor(group, device=c.device).long()
    min_keep = torch.as_tensor(min_keep, dtype=c.dtype, device=c.device).reshape(-1)
    if g.shape != c.shape or bool(((g < 0) | (g >= min_keep.numel())).any()):
        raise InternalError(f"hard_topk group ids must be [N] in [0, {min_keep.numel()}) (one min_keep per group)")
    need = (min_keep - torch.zeros_like(min_keep).index_add_(0, g, c * forced)).clamp(min=0)
    # Group-major order, best score first inside a group (both sorts stable, so ties go to the lower index).
    og = order[torch.sort(g[order], stable=True).indices]
    gs = g[og]
    free_cost = c[og] * ~forced[og]
    before = torch.cumsum(free_cost, 0) - free_cost
    start = torch.zeros_like(need).scatter_reduce(0, gs, before, "amin", include_self=False)
    available = torch.zeros_like(need).index_add_(0, gs, free_cost)
    tol = 1e-9 * need.clamp(min=1)
    short = (available < need - tol).nonzero().flatten()
    if short.numel():
        gid = int(short[0])
        raise ConstraintError(
            f"group {gid} must keep {float(need[gid]):g} more cost but only {float(available[gid]):g} can be kept there"
        )
    pick = (free_cost > 0) & (before - start[gs] < need[gs] - tol[gs])
    mask = torch.zeros_like(forced)
    mask[og] = pick
    return mask


def hard_topk(
    scores: torch.Tensor,
    costs: torch.Tensor | None,
    budget: float,
    *,
    keep: torch.Tensor | None = None,
    group: torch.Tensor | None = None,
    group_min_keep: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """The exact top-K units under costs, with forced keeps and per-group minimums.

    Rule: units in ``keep`` are kept, then, per group, that group's best-scoring units
    until it keeps at least ``group_min_keep[g]`` cost (these may overshoot the minimum
    by less than one unit's cost). The remaining budget goes to the other units in
    descending score: the longest prefix of that ranking whose cost fits is kept, and
    the first unit that does not fit is pruned with everything after it (no skipping
    ahead to smaller units, so the mask stays a ranking). Hence the kept cost never
    exceeds ``budget`` and falls short of it by less than the cost of that first
    pruned unit. Ties in score go to the lower index, so the result is deterministic.

    Args:
        scores: ``[N]`` scores, higher is more important.
        costs: ``[N]`` positive costs, or None for unit costs.
        budget: Total cost to keep.
        keep: Optional ``[N]`` bool, units that must be kept (e.g. a layer the profile keeps dense).
        group: Optional ``[N]`` int group id per unit (e.g. its layer), ``0 <= id < len(group_min_keep)``.
        group_min_keep: Optional ``[num_groups]`` minimum kept cost per group (a maximum
            sparsity per layer ``s`` is ``(1 - s) * cost of the layer``).

    Returns:
        ``[N]`` bool mask of kept units.

    Raises:
        ConstraintError: The forced keeps and group minimums cost more than ``budget``, or a
            group minimum exceeds that group's total cost.
    """
    if scores.dim() != 1 or not bool(torch.isfinite(scores).all()):
        raise InternalError(f"hard_topk needs finite [N] scores, got shape {tuple(scores.shape)}")
    if (group is None) != (group_min_keep is None):
        raise InternalError("hard_topk needs both group and group_min_keep, or neither")
    budget = float(budget)
    s = scores.detach().to(torch.float64)
    c = torch.ones_like(s) if costs is None else costs.detach().to(s.device, torch.float64).expand(s.shape)
    order = torch.sort(s, descending=True, stable=True).indices
    kept = torch.zeros_like(s, dtype=torch.bool) if keep is None else keep.to(s.device, torch.bool).clone()
    if group is not None:
        kept = kept | _group_minimum(order, c, group, group_min_keep, kept)
    slack = budget - float(c[kept].sum())
    tol = 1e-12 * max(float(c.sum()), 1.0)
    if slack < -tol:
        raise ConstraintError(
            f"forced and per-group kept units cost {budget - slack:g}, more than the budget {budget:g}; "
            "lower the sparsity or relax the profile's keep/minimum rules"
        )
    free_cost = (c * ~kept)[order]
    fits = torch.cumsum(free_cost, 0) <= slack + tol
    kept[order[fits & (free_cost > 0)]] = True
    # A unit of zero cost (e.g. MACs unknown for its layer) uses none of the budget: pruning it gains nothing.
    return kept | (c == 0)


def hard_topk_grouped(scores: torch.Tensor, k: int) -> torch.Tensor:
    """N:M hard masks: the ``k`` best of each row of ``scores [G, M]`` (ties to the lower index).

    Args:
        scores: ``[G, M]`` scores.
        k: Units kept per row, ``0 <= k <= M``.

    Returns:
        ``[G, M]`` bool mask with exactly ``k`` True per row.
    """
    if scores.dim() != 2 or not 0 <= k <= scores.shape[1]:
        raise InternalError(f"hard_topk_grouped needs [G, M] scores and 0 <= k <= M, got {tuple(scores.shape)}, k={k}")
    best = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices[:, :k]
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(1, best, True)
