"""Shared helpers of the pruning benchmarks (bench_quality, bench_prune_time, bench_peers).

The two benchmark models, one library ``prune`` call per configuration, the machine line and the writer that
replaces one ``## `` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from devkit.benchdoc import DOC, write_section
from smart_onnx.data import Dataset, load_dataset
from smart_onnx.model import OnnxModel, load_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.report import PruneReport
from smart_onnx.search import SearchConfig

__all__ = [
    "DOC", "MODELS", "BenchModel", "PruneRun", "bench_model", "command_line", "emit", "footer", "machine",
    "markdown_table",
    "parse_budgets", "results_path", "run_prune", "steps_run", "today", "write_section",
]

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("fashion", "mnist")


@dataclass(frozen=True)
class BenchModel:
    """One benchmark model: its ONNX file, calibration data (search) and evaluation data (test accuracy)."""

    name: str
    label: str
    path: Path
    model: OnnxModel
    calib: Dataset
    eval: Dataset


def bench_model(name: str) -> BenchModel:
    """``fashion``: the bundled Fashion-MNIST ResNet (models/); ``mnist``: digit-recognizer-py's CNN (cache)."""
    if name == "fashion":
        path, calib, evaluation = (ROOT / "models" / f for f in ("fashion_resnet.onnx", "fashion_calib.npz",
                                                                 "fashion_eval.npz"))
        label = "Fashion-MNIST ResNet"
    elif name == "mnist":
        from tools.prepare_mnist_cnn import prepare

        files = prepare()
        path, calib, evaluation = files.model, files.calib, files.eval
        label = "MNIST CNN (digit-recognizer-py)"
    else:
        raise ValueError(f"unknown benchmark model {name!r}; choose from {MODELS}")
    model = load_model(path)
    return BenchModel(name, label, Path(path), model, load_dataset(calib, model.inputs),
                      load_dataset(evaluation, model.inputs))


@dataclass(frozen=True)
class PruneRun:
    """One pruned model and the numbers the benchmarks print."""

    model: OnnxModel
    report: PruneReport

    @property
    def accuracy(self) -> float:
        return float(self.report.eval.outputs[0].accuracy)

    @property
    def dense_accuracy(self) -> float:
        return float(self.report.eval.outputs[0].reference_accuracy)

    @property
    def agreement(self) -> float:
        return float(self.report.eval.outputs[0].top1_agreement)

    @property
    def achieved(self) -> float:
        return float(self.report.sparsity.achieved_params)

    @property
    def seconds(self) -> float:
        return self.report.seconds.total

    @property
    def steps_run(self) -> tuple[int, int]:
        return steps_run(self.report)


def steps_run(report: PruneReport) -> tuple[int, int]:
    """Search and fine-tune steps a run actually ran (the loss curves' lengths: the time budget or early stopping
    may end a phase before the steps planned)."""
    return len(report.history.loss), len(report.history.finetune_loss)


def run_prune(bm: BenchModel, mode: str, sparsity: float, method: str, *, steps: int | None,
              finetune_steps: int | None, seed: int = 0, batch_size: int | None = None, latency: bool = False,
              **search: Any) -> PruneRun:
    """The library ``prune`` on ``bm``'s calibration data, evaluated on its eval data (16x8x1x1 blocks).

    ``steps`` / ``finetune_steps`` None: the library's step plan (``SearchConfig``'s defaults)."""
    cfg = SearchConfig(sparsity=sparsity, method=method, steps=steps, finetune_steps=finetune_steps, seed=seed,
                       batch_size=batch_size, **search)
    options = PruneOptions(mode=mode, block=(16, 8, 1, 1), search=cfg, latency=latency)
    torch.manual_seed(seed)
    outcome = prune(bm.model, bm.calib, bm.eval, options)
    return PruneRun(outcome.model, outcome.report)


def results_path(name: str) -> Path:
    """Where a benchmark keeps its finished runs for reuse: ``<cache>/bench/<name>`` (outside the repository)."""
    from devkit.thirdparty import cache_dir

    folder = cache_dir() / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def machine() -> str:
    """CPU model, cores, torch version and threads, load average (the machine may be shared)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); "
            f"load average at the start {load}")


def load_note() -> str:
    """Said when the machine was busier than its cores at the start: other jobs shared the CPUs, so the run's
    wall times and latencies are upper bounds. Empty otherwise."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return ""
    return (f" (above the {cores} cores: other jobs shared the CPUs during the run, so latencies and wall times are "
            "upper bounds)")


def today() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` holds one of ``l``/``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def parse_budgets(models: Sequence[str], steps: int, finetune: int, items: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Step budget per model: ``(steps, finetune)`` unless an item ``MODEL=STEPS:FINETUNE`` overrides it."""
    budgets = {m: (steps, finetune) for m in models}
    for item in items:
        model, _, pair = item.partition("=")
        s, f = (int(x) for x in pair.split(":"))
        budgets[model] = (s, f)
    return budgets


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, for the docs."""
    return f"python -m {module} " + shlex.join(sys.argv[1:] if argv is None else argv)


def footer(module: str, argv: Sequence[str] | None, where: str | None = None, *, note: str = "") -> str:
    """A section's closing lines: the command that reproduces it, the machine (``where``, measured now when None)
    with an optional ``note``, and the date."""
    return (f"- command: `{command_line(module, argv).strip()}`\n- machine: {where or machine()}{note}\n"
            f"- date: {today()}\n")


def emit(heading: str, body: str, write: bool, path: Path = DOC) -> None:
    """Print the section body, and with ``write`` replace the section in the benchmarks page."""
    sys.stdout.write(body)
    if write:
        write_section(heading, body, path)
