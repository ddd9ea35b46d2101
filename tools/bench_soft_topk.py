"""Benchmark SoftTopK: forward and backward time, and peak memory, from 10^3 to 10^6 units.

    python -m tools.bench_soft_topk            # print a markdown table
    python -m tools.bench_soft_topk --write    # also (re)write the "## Soft top-k" section of docs/benchmarks.md

Each size runs in a fresh process so that its peak resident memory (ru_maxrss) is its own;
memory is reported as the rise of the peak over the process's level once the inputs exist,
i.e. what the operator's temporaries cost. Times are medians over --repeats runs after one warm-up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import time

import torch

from smart_onnx.search.soft_topk import soft_topk
from tools._bench_common import DOC, emit, footer, machine

HEADING = "## Soft top-k"


def _measure(job: tuple[int, float, int, int]) -> dict[str, float]:
    n, tau, repeats, threads = job
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(n, generator=gen).requires_grad_()
    costs = torch.rand(n, generator=gen) * 100 + 1
    grad = torch.randn(n, generator=gen)
    budget = 0.5 * float(costs.sum())
    # A tiny call first, so that lazy initialisation of torch/autograd is not counted as the operator's memory.
    soft_topk(torch.zeros(8, requires_grad=True), None, 4.0, tau).backward(torch.ones(8))
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fwd, bwd, cpu, err = [], [], [], 0.0
    for _ in range(repeats + 1):
        scores.grad = None
        c0, t0 = time.process_time(), time.perf_counter()
        p = soft_topk(scores, costs, budget, tau)
        t1 = time.perf_counter()
        p.backward(grad)
        t2, c2 = time.perf_counter(), time.process_time()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        cpu.append(c2 - c0)
        err = max(err, abs(float((costs.double() * p.detach().double()).sum()) - budget) / budget)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": n,
        "tau": tau,
        "fwd_ms": 1e3 * statistics.median(fwd[1:]),
        "bwd_ms": 1e3 * statistics.median(bwd[1:]),
        "cpu_ms": 1e3 * statistics.median(cpu[1:]),
        "peak_mib": max(peak_kib - base_kib, 0) / 1024,
        "budget_err": err,
    }


def _table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| units | tau | forward ms | backward ms | total ms | CPU ms | peak extra MiB | budget rel. error |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['n']):,} | {r['tau']:g} | {r['fwd_ms']:.2f} | {r['bwd_ms']:.2f} | "
            f"{r['fwd_ms'] + r['bwd_ms']:.2f} | {r['cpu_ms']:.2f} | {r['peak_mib']:.1f} | {r['budget_err']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**3, 10**4, 10**5, 10**6])
    parser.add_argument("--taus", type=float, nargs="+", default=[1.0, 1e-3])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of {DOC.name}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = machine()
    jobs = [(n, tau, args.repeats, args.threads) for n in args.sizes for tau in args.taus]
    rows = []
    ctx = multiprocessing.get_context("spawn")
    for job in jobs:
        with ctx.Pool(1) as pool:
            rows.append(pool.apply(_measure, (job,)))
    body = (
        "Forward + backward of `SoftTopK` over all units at once (float32 scores, random costs, budget = half "
        "the total cost; the budget error is that of the float32 output). Medians of "
        f"{args.repeats} runs after a warm-up: ms are wall time; CPU ms is the process's CPU time for forward + "
        "backward, less disturbed when other jobs share the machine; peak extra MiB is the rise of the process's "
        "peak RSS while running (the operator's float64 temporaries).\n\n"
        + footer("tools.bench_soft_topk", argv, where) + "\n"
        f"{_table(rows)}"
    )
    emit(HEADING, body + "\n", args.write)


if __name__ == "__main__":
    main()
