"""Pruning quality: test accuracy of smart vs the baselines at the same step budget (issue 4).

    python -m tools.bench_quality --seeds 0 1 --threads 1 --write     # the CLI's step budget

Parallel processes may split the work with ``--points`` (and ``--models``); they share ``--results``.

For each model (the bundled Fashion-MNIST ResNet, the MNIST CNN of digit-recognizer-py) and each point
(16x8x1x1 block sparsity 30/50/70 %, channel sparsity 20/50 %), runs ``prune`` with every method on the
calibration data and measures top-1 accuracy on the separate eval set in onnxruntime. SMART gets ``steps`` of
joint search + ``finetune_steps``; the baselines get ``steps + finetune_steps`` fine-tune steps (the library's
rule), so every method makes the same number of weight updates. Finished runs are appended to ``--results``
(JSON lines) and reused, so an interrupted run resumes and models can be run separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from smart_onnx.search import SearchConfig
from tools._bench_common import (
    MODELS,
    bench_model,
    emit,
    footer,
    machine,
    markdown_table,
    parse_budgets,
    results_path,
    run_prune,
)

HEADING = "## Pruning quality"
METHODS = ("smart", "magnitude", "uniform", "random")
POINTS = (("block", 0.3), ("block", 0.5), ("block", 0.7), ("channel", 0.2), ("channel", 0.5))


def _key(model: str, mode: str, sparsity: float, method: str, seed: int, steps: int, ft: int) -> str:
    return f"{model}|{mode}|{sparsity:g}|{method}|{seed}|{steps}|{ft}"


def _load(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["key"]: r for r in rows}


def measure(models: Sequence[str], seeds: Sequence[int], budgets: dict[str, tuple[int, int]], results: Path,
            points: Sequence[tuple[str, float]] = POINTS) -> dict[str, dict]:
    """Run every (model, point, method, seed) not yet in ``results``; returns all rows by key."""
    done = _load(results)
    for name in models:
        bm, (steps, ft) = None, budgets[name]
        for mode, sparsity in points:
            for method in METHODS:
                for seed in seeds:
                    key = _key(name, mode, sparsity, method, seed, steps, ft)
                    if key in done:
                        continue
                    bm = bm or bench_model(name)
                    start = time.perf_counter()
                    run = run_prune(bm, mode, sparsity, method, steps=steps, finetune_steps=ft, seed=seed)
                    row = {"key": key, "model": name, "label": bm.label, "mode": mode, "sparsity": sparsity,
                           "method": method, "seed": seed, "accuracy": run.accuracy, "dense": run.dense_accuracy,
                           "agreement": run.agreement, "achieved": run.achieved,
                           "seconds": time.perf_counter() - start, "eval_samples": len(bm.eval)}
                    done[key] = row
                    with results.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    sys.stderr.write(f"{key}: acc {run.accuracy:.4f} achieved {run.achieved:.3f} "
                                     f"({row['seconds']:.0f} s)\n")
    return done


@dataclass(frozen=True)
class _Cell:
    """One method at one point, over seeds: mean accuracy and its seed-to-seed standard deviation, mean top-1
    agreement with the dense model, mean achieved sparsity."""

    accuracy: float
    std: float
    agreement: float
    achieved: float
    seeds: int

    @classmethod
    def of(cls, rows: list[dict]) -> _Cell:
        acc = [r["accuracy"] for r in rows]
        return cls(statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0,
                   statistics.mean(r["agreement"] for r in rows), statistics.mean(r["achieved"] for r in rows),
                   len(acc))

    def text(self) -> str:
        spread = f" ±{100 * self.std:.2f}" if self.seeds > 1 else ""
        return f"{100 * self.accuracy:.2f}{spread} ({100 * self.achieved:.1f}%)"


def summarise(rows: dict[str, dict], models: Sequence[str], seeds: Sequence[int],
              budgets: dict[str, tuple[int, int]]) -> tuple[str, list[str]]:
    """Markdown tables (one per model) and the target verdicts."""
    out, verdicts = [], []
    for name in models:
        steps, ft = budgets[name]
        by_point: dict[tuple, dict[str, list[dict]]] = {}
        for r in rows.values():
            if r["model"] == name and r["seed"] in seeds and r["key"].endswith(f"|{steps}|{ft}"):
                by_point.setdefault((r["mode"], r["sparsity"]), {}).setdefault(r["method"], []).append(r)
        if not by_point:
            continue
        first = next(iter(next(iter(by_point.values())).values()))[0]
        dense = first["dense"]
        table, agreement = [], []
        for mode, sparsity in POINTS:
            cells = by_point.get((mode, sparsity), {})
            if not cells:
                continue
            acc = {m: _Cell.of(cells[m]) for m in METHODS if m in cells}
            best_baseline = max((c.accuracy for m, c in acc.items() if m != "smart"), default=float("nan"))
            row = [f"{mode} {sparsity:.0%}", f"{100 * dense:.2f}"]
            row += [acc[m].text() if m in acc else "-" for m in METHODS]
            agreement.append([row[0], *(f"{100 * acc[m].agreement:.2f}" if m in acc else "-" for m in METHODS)])
            if "smart" in acc:
                row.append(f"{100 * (acc['smart'].accuracy - best_baseline):+.2f}")
                verdicts += _verdicts(first["label"], mode, sparsity, acc, dense, first["eval_samples"])
            table.append(row)
        header = ["point", "dense", *METHODS, "smart - best baseline"]
        used = sorted({r["seed"] for cells in by_point.values() for rs in cells.values() for r in rs})
        out.append(f"**{first['label']}**: smart {steps} search + {ft} fine-tune steps, baselines {steps + ft} "
                   f"fine-tune steps, seeds {', '.join(map(str, used))}; mean accuracy % on "
                   f"{first['eval_samples']} eval samples (one sample is {100 / first['eval_samples']:.3f} points), "
                   "± the standard deviation over seeds, in parentheses the "
                   f"achieved sparsity of the prunable weights\n\n" + markdown_table(header, table)
                   + "\n\nTop-1 agreement with the dense model (% of the eval samples on which the pruned model "
                   "predicts the dense model's class), mean over the same seeds:\n\n"
                   + markdown_table(["point", *METHODS], agreement))
    return "\n\n".join(out), verdicts


def _verdicts(label: str, mode: str, sparsity: float, acc: dict[str, _Cell], dense: float, samples: int) -> list[str]:
    smart = acc["smart"]
    point = f"{label}, {mode} {sparsity:.0%}"
    lines = []
    beaten = [m for m, c in acc.items() if m != "smart" and c.accuracy > smart.accuracy]
    why = [_shortfall(m, acc[m], smart, samples) for m in beaten]
    lines.append(f"{'PASS' if not beaten else 'FAIL'} {point}: smart >= every baseline"
                 + (f" (beaten by {'; '.join(why)})" if beaten else ""))
    if (mode, sparsity) in (("block", 0.7), ("channel", 0.5)) and "magnitude" in acc:
        gap = 100 * (smart.accuracy - acc["magnitude"].accuracy)
        ceiling = "; unreachable: magnitude is within 1 point of 100%" if acc["magnitude"].accuracy > 0.99 else ""
        lines.append(f"{'PASS' if gap >= 1.0 else 'FAIL'} {point}: smart >= magnitude + 1 point ({gap:+.2f}{ceiling})")
    if (mode, sparsity) == ("block", 0.5):
        drop = 100 * (dense - smart.accuracy)
        lines.append(f"{'PASS' if drop <= 1.0 else 'FAIL'} {point}: smart <= 1 point below dense ({drop:.2f} below)")
    return lines


def _shortfall(method: str, baseline: _Cell, smart: _Cell, samples: int) -> str:
    """How far a baseline is ahead of smart, in points and eval samples, against the seed-to-seed spread."""
    gap = baseline.accuracy - smart.accuracy
    text = f"{method} by {100 * gap:.2f} points = {gap * samples:.1f} of {samples} samples"
    if smart.seeds > 1 and gap <= max(smart.std, baseline.std):
        text += f", within the seed-to-seed std (smart {100 * smart.std:.2f}, {method} {100 * baseline.std:.2f})"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=SearchConfig.steps,
                        help="SMART search steps (default: the CLI's)")
    parser.add_argument("--finetune-steps", type=int, default=SearchConfig.finetune_steps,
                        help="fine-tune steps (default: the CLI's)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--results", type=Path, default=results_path("quality.jsonl"),
                        help="JSON lines of finished runs (reused)")
    parser.add_argument("--budget", nargs="+", default=[], metavar="MODEL=STEPS:FINETUNE",
                        help="per-model step budget overriding --steps/--finetune-steps, e.g. fashion=10:10")
    parser.add_argument("--points", nargs="+", default=[f"{m}:{s:g}" for m, s in POINTS],
                        help="subset of the points to run, as MODE:SPARSITY (parallel processes share --results)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = machine()
    points = [(p.split(":")[0], float(p.split(":")[1])) for p in args.points]
    budgets = parse_budgets(args.models, args.steps, args.finetune_steps, args.budget)
    rows = measure(args.models, args.seeds, budgets, args.results, points)
    rows = _load(args.results)  # rows that parallel processes finished meanwhile
    tables, verdicts = summarise(rows, args.models, args.seeds, budgets)
    total = sum(r["seconds"] for r in rows.values() if r["model"] in args.models and r["seed"] in args.seeds
                and r["key"].endswith("|{}|{}".format(*budgets[r["model"]])))
    body = (
        "Top-1 accuracy on the models' eval sets (never the calibration data), measured in onnxruntime on the "
        "exported pruned model. Every method runs through `smart_onnx.prune.prune` with the same weight-update "
        "budget per model (smart: S search + F fine-tune steps; the baselines global magnitude, per-layer uniform "
        "magnitude and random: S + F fine-tune steps; S and F above each table); batch 32, distillation to the "
        f"dense model (temperature {SearchConfig.distill_temperature:g}) + cross-entropy on the calibration labels. "
        "Block mode: 16x8x1x1 blocks; channel mode: coupled "
        "output-channel groups; sparsity = fraction of prunable weights removed.\n\n"
        f"{tables}\n\nTargets (issue 4):\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n\n"
        + footer("tools.bench_quality", argv, where)
        + f"- total prune time of the runs above: {total / 60:.1f} min\n"
    )
    emit(HEADING, body, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
