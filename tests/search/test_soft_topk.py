"""SoftTopK: exact implicit gradient, budget constraint, limits; hard top-k rules."""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_onnx.errors import ConstraintError, InternalError
from smart_onnx.search import SoftTopK, hard_topk, hard_topk_grouped, soft_topk, soft_topk_grouped, solve_threshold


def _scores(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _costs(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + 0.2


@pytest.mark.parametrize("n", [1, 2, 7, 40])
@pytest.mark.parametrize("tau", [5.0, 1.0, 0.3])
@pytest.mark.parametrize("unit_costs", [True, False], ids=["unit", "costs"])
def test_gradcheck(n: int, tau: float, unit_costs: bool) -> None:
    m = _scores(n).requires_grad_()
    c = torch.ones(n, dtype=torch.float64) if unit_costs else _costs(n)
    budget = 0.4 * float(c.sum())
    assert torch.autograd.gradcheck(lambda s: SoftTopK.apply(s, c, budget, tau), (m,))


@pytest.mark.parametrize("tau", [2.0, 0.5])
def test_gradcheck_grouped(tau: float) -> None:
    m = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: soft_topk_grouped(s, 2, tau), (m,))


def test_gradcheck_rows_with_own_budget_and_costs() -> None:
    m = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    c = _costs(15).reshape(3, 5)
    budget = torch.tensor([1.0, 2.5, 4.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: SoftTopK.apply(s, c, budget, 0.7), (m,))
    p = SoftTopK.apply(m, c, budget, 0.7)
    torch.testing.assert_close((c * p).sum(1), budget, rtol=1e-10, atol=0)


def test_gradcheck_costs_broadcast_over_leading_axes() -> None:
    m = torch.randn(2, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_()
    c = torch.tensor([[0.5], [1.0], [2.0]], dtype=torch.float64)  # one cost per middle row, shared by its units
    assert torch.autograd.gradcheck(lambda s: SoftTopK.apply(s, c, 2.0, 0.5), (m,))
    kept = (c * SoftTopK.apply(m, c, 2.0, 0.5)).sum(-1)
    torch.testing.assert_close(kept, torch.full((2, 3), 2.0, dtype=torch.float64))


def test_rows_leaving_the_iteration_when_solved_keep_their_own_threshold() -> None:
    """solve_threshold drops the rows it has solved from its iterations: each row's t is what it is alone."""
    gen = torch.Generator().manual_seed(12)
    scale = torch.logspace(-2, 3, 40, dtype=torch.float64)[:, None]  # rows that converge after 2 to 20 iterations
    z = torch.randn(40, 5, generator=gen, dtype=torch.float64) * scale
    costs = torch.rand(40, 5, generator=gen, dtype=torch.float64) + 0.5
    budget = torch.rand(40, generator=gen, dtype=torch.float64) * 2 + 0.2
    budget[3], budget[17] = 0.0, float(costs[17].sum())  # all pruned, all kept
    t = solve_threshold(z, costs, budget)
    alone = torch.cat([solve_threshold(z[i:i + 1], costs[i:i + 1], budget[i:i + 1]) for i in range(40)])
    torch.testing.assert_close(t, alone, rtol=1e-12, atol=0)
    assert t[3] == -float("inf") and t[17] == float("inf")
    kept = (costs * torch.sigmoid(z + t[:, None])).sum(1)
    torch.testing.assert_close(kept[budget > 0], budget[budget > 0], rtol=1e-10, atol=0)


@pytest.mark.parametrize("unit_costs", [True, False], ids=["unit", "costs"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_in_chunks_give_the_whole_tensors_values_and_gradients(
    monkeypatch: pytest.MonkeyPatch, unit_costs: bool, dtype: torch.dtype
) -> None:
    """Both passes run over chunks of rows to bound their float64 work tensors: the one-chunk result to the last
    bits of float64 (an element's sigmoid rounds by one ulp differently where it falls in a vectorised loop's
    scalar tail, which moves with the chunk's size); float32 results round those differences away."""
    soft_topk_module = importlib.import_module("smart_onnx.search.soft_topk")
    gen = torch.Generator().manual_seed(11)
    m = (torch.randn(3, 67, 4, generator=gen, dtype=torch.float64) * 3).to(dtype)
    c = None if unit_costs else _costs(4).reshape(1, 1, 4)  # broadcast over both leading axes
    budget = torch.rand(3 * 67, generator=gen, dtype=torch.float64) * 2 + 0.5
    grad_p = torch.randn(m.shape, generator=gen, dtype=torch.float64).to(dtype)
    results = []
    for units in (1 << 20, 4, 20):  # one chunk; a row per chunk; 5 rows per chunk, the last one shorter
        monkeypatch.setattr(soft_topk_module, "_CHUNK_UNITS", units)
        scores = m.clone().requires_grad_()
        p = SoftTopK.apply(scores, c, budget, 0.3)
        p.backward(grad_p)
        results.append((p.detach(), scores.grad))
    tol = {"rtol": 1e-13, "atol": 1e-15} if dtype == torch.float64 else {"rtol": 2e-7, "atol": 1e-9}
    for p, grad in results[1:]:
        torch.testing.assert_close(p, results[0][0], **tol)
        torch.testing.assert_close(grad, results[0][1], **tol)
    assert p.dtype == grad.dtype == dtype and p.is_contiguous() and grad.is_contiguous()


@pytest.mark.parametrize("n", [1, 7, 1000, 10**6])
@pytest.mark.parametrize("tau", [10.0, 1.0, 1e-2, 1e-4])
@pytest.mark.parametrize("unit_costs", [True, False], ids=["unit", "costs"])
def test_budget_holds_and_backward_is_finite(n: int, tau: float, unit_costs: bool) -> None:
    m = _scores(n, dtype=torch.float32).requires_grad_()
    c = torch.ones(n, dtype=torch.float64) if unit_costs else _costs(n)
    budget = 0.3 * float(c.sum())
    p = soft_topk(m, c, budget, tau)
    assert p.dtype == torch.float32
    assert bool(torch.isfinite(p).all()) and bool(((p >= 0) & (p <= 1)).all())
    assert float((c * p.detach().double()).sum()) == pytest.approx(budget, rel=1e-6)
    (p * _scores(n, seed=9, dtype=torch.float32)).sum().backward()
    assert bool(torch.isfinite(m.grad).all())


@pytest.mark.parametrize("tau", [3.0, 0.1, 1e-3])
def test_gradient_keeps_budget(tau: float) -> None:
    """Moving along the gradient of sum(c p) changes nothing: the constraint is invariant."""
    m = _scores(50).requires_grad_()
    c = _costs(50)
    (c * soft_topk(m, c, 20.0, tau)).sum().backward()
    assert float(m.grad.abs().max()) < 1e-9


def test_matches_autograd_through_closed_form() -> None:
    """With two units, unit costs and budget 1, p = sigmoid((m0 - m1) / (2 tau)) exactly."""
    m = torch.tensor([0.3, -0.5], dtype=torch.float64, requires_grad=True)
    m_ref = m.detach().clone().requires_grad_()
    tau = 0.4
    p = soft_topk(m, None, 1.0, tau)
    p_ref = torch.sigmoid(torch.stack([m_ref[0] - m_ref[1], m_ref[1] - m_ref[0]]) / (2 * tau))
    torch.testing.assert_close(p, p_ref, rtol=1e-12, atol=1e-14)
    w = torch.tensor([1.5, -0.2], dtype=torch.float64)
    (w * p).sum().backward()
    (w * p_ref).sum().backward()
    torch.testing.assert_close(m.grad, m_ref.grad, rtol=1e-10, atol=1e-14)


def test_small_tau_recovers_hard_topk() -> None:
    scores = torch.randperm(200, generator=torch.Generator().manual_seed(5)).double() * 0.01
    p = soft_topk(scores, None, 60.0, 1e-4)
    hard = hard_topk(scores, None, 60.0)
    assert int(hard.sum()) == 60
    torch.testing.assert_close(p, hard.double(), rtol=0, atol=1e-12)
    assert torch.equal(hard, torch.zeros(200, dtype=torch.bool).scatter_(0, scores.topk(60).indices, True))


@pytest.mark.parametrize(("budget", "expected"), [(0.0, 0.0), (-3.0, 0.0), (None, 1.0), (1e9, 1.0)])
def test_degenerate_budgets_give_constant_mask_and_zero_grad(budget: float | None, expected: float) -> None:
    m = _scores(9).requires_grad_()
    c = _costs(9)
    p = soft_topk(m, c, float(c.sum()) if budget is None else budget, 0.5)
    assert torch.equal(p, torch.full_like(p, expected))
    p.sum().backward()
    assert torch.equal(m.grad, torch.zeros_like(m))


def test_saturated_units_give_finite_zero_gradient() -> None:
    m = torch.tensor([10.0, 5.0, -5.0, -10.0], dtype=torch.float64, requires_grad=True)
    p = soft_topk(m, None, 2.0, 1e-4)
    assert torch.equal(p, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    (p * torch.arange(4.0, dtype=torch.float64)).sum().backward()
    assert torch.equal(m.grad, torch.zeros_like(m))


def test_shift_invariant_and_deterministic() -> None:
    m, c = _scores(300), _costs(300)
    p = soft_topk(m, c, 100.0, 0.2)
    assert torch.equal(p, soft_topk(m, c, 100.0, 0.2))
    torch.testing.assert_close(soft_topk(m + 7.0, c, 100.0, 0.2), p, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("scores", "costs", "tau"),
    [
        (torch.tensor([1.0, float("nan")]), None, 1.0),
        (torch.tensor([1.0, 2.0]), None, 0.0),
        (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]), 1.0),
        (torch.tensor([1.0, 2.0]), torch.ones(3), 1.0),
    ],
    ids=["nan", "tau0", "zero-cost", "shape"],
)
def test_rejects_bad_inputs(scores: torch.Tensor, costs: torch.Tensor | None, tau: float) -> None:
    with pytest.raises(InternalError):
        soft_topk(scores, costs, 1.0, tau)


def test_grouped_keeps_k_per_row() -> None:
    m = torch.randn(1000, 4, generator=torch.Generator().manual_seed(6))
    p = soft_topk_grouped(m, 2, 1e-3)
    torch.testing.assert_close(p.double().sum(1), torch.full((1000,), 2.0, dtype=torch.float64), rtol=1e-6, atol=0)
    hard = hard_topk_grouped(m, 2)
    assert torch.equal(hard.sum(1), torch.full((1000,), 2))
    assert torch.equal(hard, torch.zeros_like(hard).scatter_(1, m.topk(2, dim=1).indices, True))


@pytest.mark.parametrize("seed", range(5))
def test_hard_topk_meets_budget_within_one_unit(seed: int) -> None:
    scores, costs = _scores(500, seed), _costs(500, seed + 100)
    budget = 0.37 * float(costs.sum())
    kept = hard_topk(scores, costs, budget)
    achieved = float(costs[kept].sum())
    first_pruned = int(torch.argmax(torch.where(kept, -torch.inf, scores)))
    assert budget - float(costs[first_pruned]) < achieved <= budget
    assert float(scores[kept].min()) > float(scores[~kept].max())
    assert torch.equal(kept, hard_topk(scores, costs, budget))


def test_hard_topk_ties_go_to_lower_index() -> None:
    kept = hard_topk(torch.tensor([1.0, 2.0, 1.0, 1.0, 0.0]), None, 3.0)
    assert kept.tolist() == [True, True, True, False, False]
    assert hard_topk_grouped(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), 2).tolist() == [[True, True, False, False]]


def test_hard_topk_respects_keep() -> None:
    scores, costs = _scores(100), _costs(100)
    keep = torch.zeros(100, dtype=torch.bool)
    keep[torch.argsort(scores)[:5]] = True  # the five worst units
    budget = 0.5 * float(costs.sum())
    kept = hard_topk(scores, costs, budget, keep=keep)
    assert bool(kept[keep].all())
    assert float(costs[kept].sum()) <= budget
    free = kept & ~keep
    assert float(scores[free].min()) > float(scores[~kept].max())
    assert int(keep.sum()) == 5


def test_hard_topk_group_minimum_and_dense_group() -> None:
    """Group 0 is forced dense by keep; group 1 may be at most 80% sparse; group 2 has no rule."""
    scores = torch.cat([torch.full((10,), -5.0), torch.linspace(-3, -2, 10), torch.linspace(0, 1, 10)])
    costs = torch.ones(30)
    group = torch.arange(30) // 10
    keep = group == 0
    kept = hard_topk(scores, costs, 15.0, keep=keep, group=group, group_min_keep=torch.tensor([0.0, 2.0, 0.0]))
    assert int(kept.sum()) == 15
    assert bool(kept[:10].all())
    assert kept[10:20].tolist() == [False] * 8 + [True, True]  # its two best units
    assert int(kept[20:].sum()) == 3 and bool(kept[27:].all())


@pytest.mark.parametrize(
    ("budget", "min_keep"),
    [(5.0, [6.0, 0.0]), (20.0, [0.0, 11.0])],
    ids=["minimum-over-budget", "minimum-over-group-size"],
)
def test_hard_topk_impossible_constraints_raise(budget: float, min_keep: list[float]) -> None:
    group = torch.arange(20) // 10
    with pytest.raises(ConstraintError):
        hard_topk(_scores(20), None, budget, group=group, group_min_keep=min_keep)


def test_hard_topk_rejects_group_ids_without_a_minimum() -> None:
    with pytest.raises(InternalError):
        hard_topk(_scores(4), None, 2.0, group=torch.tensor([0, 1, 2, 2]), group_min_keep=[1.0, 1.0])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    tau=st.sampled_from([10.0, 1.0, 1e-2, 1e-4]),
    keep_fraction=st.floats(0.0, 1.0),
)
def test_property_budget_and_prefix(n: int, seed: int, scale: float, tau: float, keep_fraction: float) -> None:
    m = (_scores(n, seed) * scale).requires_grad_()
    c = _costs(n, seed + 1)
    budget = keep_fraction * float(c.sum())
    p = soft_topk(m, c, budget, tau)
    assert float((c * p.detach()).sum()) == pytest.approx(budget, rel=1e-6, abs=1e-9)
    p.backward(_scores(n, seed + 2))
    assert bool(torch.isfinite(m.grad).all())
    kept = hard_topk(m.detach(), c, budget)
    achieved = float(c[kept].sum())
    assert achieved <= budget + 1e-9
    if not bool(kept.all()):
        first_pruned = int(torch.argmax(torch.where(kept, -torch.inf, m.detach())))
        assert budget - achieved < float(c[first_pruned])
