"""Fuzz soak: run many seeded architecture cases in-process and summarise the failures.

Each case (devkit/fuzz/case.py) draws a random architecture, exports it, checks the
executor against onnxruntime and prunes it in block, channel and N:M mode.

    python -m tools.soak                           # 300 cases from seed 0
    python -m tools.soak --seed 1234 --cases 1     # reproduce one failing case
    python -m tools.soak --cases 200 --time-limit 1800 --write   # and record it in docs/benchmarks.md

Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import sys
import time
import warnings
from collections import Counter

from devkit.fuzz.case import OVERSHOOT, FuzzFailure, run_case
from tools._bench_common import emit, machine

HEADING = "## Fuzz soak"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="first seed (cases use seed, seed+1, ...)")
    p.add_argument("--cases", type=int, default=300, help="number of cases")
    p.add_argument("--time-limit", type=float, default=0.0, help="stop starting new cases after this many seconds")
    p.add_argument("--dynamo-fraction", type=float, default=0.15, help="share of cases exported with dynamo=True")
    p.add_argument("--write", action="store_true", help=f"update the '{HEADING}' section of docs/benchmarks.md")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    return p.parse_args(argv)


def _section(summary: dict, command: str) -> str:
    lines = [
        "Random architectures (tests/fuzz: odd widths, grouped/depthwise and transposed convs, residuals over "
        "several layers, split/concat at odd offsets, SE gates, token MatMul FFNs, NHWC wrappers, Gemm heads), "
        "exported with the legacy exporter (opset 13/17/20) or dynamo; each case checks the executor against "
        "onnxruntime and prunes in block, channel and N:M mode (3 search + 2 fine-tune steps), checking the "
        "result with `onnx.checker` (full), strict shape inference, the masked-executor comparison inside "
        "`prune`, the executor vs onnxruntime on the pruned model and achieved >= requested sparsity; half the "
        "block cases prune for the default hardware profile and must pass its `check`. A ConstraintError "
        "from a rewrite pass (the rewriter rejecting the search's own mask) counts as a failure.",
        "",
        f"- command: `{command}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine']}",
        f"- cases run: {summary['cases']} (seeds {summary['first']}..{summary['last']}), "
        f"{summary['dynamo']} exported with dynamo, {summary['seconds']:.0f} s",
        f"- prunes: {summary['prunes_ok']} verified, {summary['refused']} refused with a one-line error",
        f"- failures: {len(summary['failures'])}",
    ]
    lines += [f"  - {msg}" for msg in summary["failures"]]
    if summary["overshoots"]:
        lines.append(f"- sparsity overshoots above {OVERSHOOT} (not failures): {len(summary['overshoots'])}, e.g. "
                     + "; ".join(summary["overshoots"][:3]))
    if summary["refusals"]:
        lines.append("- refusals (by message):")
        lines += [f"  - {n}x {msg}" for msg, n in summary["refusals"].most_common(8)]
    return "\n".join(lines) + "\n"


def soak(first: int, cases: int, time_limit: float, dynamo_fraction: float, verbose: bool) -> dict:
    """Run the cases; return a summary dict (failures are 'seed N: message' strings)."""
    start = time.perf_counter()
    failures: list[str] = []
    refusals: Counter[str] = Counter()
    overshoots: list[str] = []
    ran = dynamo = ok = 0
    for seed in range(first, first + cases):
        if time_limit and time.perf_counter() - start > time_limit:
            break
        ran += 1
        try:
            outcome = run_case(seed, dynamo_fraction)
        except FuzzFailure as e:
            failures.append(str(e))
            print(f"FAIL {e}", file=sys.stderr, flush=True)
            continue
        dynamo += outcome.exporter == "dynamo"
        for result in outcome.modes.values():
            if result.startswith("ok"):
                ok += 1
                if result != "ok":
                    overshoots.append(f"seed {seed}: {result.removeprefix('ok, ')}")
            else:
                refusals[result[:160]] += 1
        if verbose:
            print(f"seed {seed} {outcome.exporter} {outcome.modes} {outcome.seconds:.1f}s", file=sys.stderr, flush=True)
    return {
        "cases": ran, "first": first, "last": first + ran - 1, "dynamo": dynamo, "prunes_ok": ok,
        "refused": sum(refusals.values()), "refusals": refusals, "failures": failures, "overshoots": overshoots,
        "seconds": time.perf_counter() - start, "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    summary = soak(args.seed, args.cases, args.time_limit, args.dynamo_fraction, args.verbose)
    print(f"cases run: {summary['cases']} (seeds {summary['first']}..{summary['last']}, {summary['dynamo']} dynamo) "
          f"in {summary['seconds']:.0f} s; prunes verified: {summary['prunes_ok']}, refused: {summary['refused']}; "
          f"failures: {len(summary['failures'])}")
    for msg in summary["failures"]:
        print(f"  {msg}")
    for msg in summary["overshoots"]:
        print(f"  {msg}")
    for msg, n in summary["refusals"].most_common():
        print(f"  refused {n}x: {msg}")
    if args.write:
        command = shlex.join(["python", "-m", "tools.soak", *(argv if argv is not None else sys.argv[1:])])
        emit(HEADING, _section(summary, command), write=True)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
