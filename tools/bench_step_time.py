"""Where a training step's time goes: the dense teacher in torch or in onnxruntime, side by side in one run.

With augmented inputs (the default below 500 calibration samples) the teacher's outputs and features are
recomputed every step. ``prune`` runs them in onnxruntime on the CPU (search/trainer.py, ``DenseRunner``); this
measures, per model of tools/bench_fidelity.py's recipes, one batch of the teacher both ways and a search step
of a library ``prune`` call both ways (the same seed, steps and batch), and prints a markdown table.

    python -m tools.bench_step_time --models efficientnet-lite0,nudenet --batch-size 8 --threads 1
    python -m tools.bench_step_time --models minilm --batch-size 32 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from unittest import mock

import numpy as np
import torch

import smart_onnx.prune as prune_module
from smart_onnx.eval.ort import tensor_runner
from smart_onnx.executor import Executor
from smart_onnx.model import load_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tools._bench_common import footer, markdown_table
from tools.bench_fidelity import RECIPES

REPEATS = 5


def _median_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    run()  # warm-up: allocations, onnxruntime's first-run planning
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, batch: int, steps: int, threads: int) -> list[object]:
    recipe = RECIPES[name]
    model = load_model(recipe.path())
    calib, held = recipe.data(model)
    options = PruneOptions(mode="block", block=(16, 8, 1, 1), latency=False, search=SearchConfig(
        sparsity=0.5, steps=steps, finetune_steps=0, batch_size=batch, refit=False, time_budget=None))

    def step_seconds(opts: PruneOptions = options) -> tuple[float, list[str]]:
        torch.manual_seed(0)
        report = prune(model, calib, held, opts).report
        return report.seconds.search / steps, report.training.features

    # Untimed first: a process's first prune pays one-off costs (lazy imports, first allocations) that would
    # count against whichever teacher came first.
    step_seconds(replace(options, search=replace(options.search, steps=2)))
    with mock.patch.object(prune_module, "_dense_runner", lambda m: lambda tensors: None):
        step_torch, features = step_seconds()
    step_ort, _ = step_seconds()

    feeds = {k: np.ascontiguousarray(v[:batch]) for k, v in calib.arrays.items()}
    tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}
    dense = Executor(model)
    for p in dense.parameters():
        p.requires_grad_(False)
    capture = {n: (lambda x: x) for n in features}  # as the trainer's teacher: the features pass through hooks

    def in_torch() -> None:
        with torch.no_grad():
            dense(tensors, transforms=capture)

    runner = tensor_runner(model, features, threads=threads)
    torch_s, ort_s = _median_seconds(in_torch), _median_seconds(lambda: runner(feeds))
    return [recipe.label, batch, len(features), f"{torch_s:.3f}", f"{ort_s:.3f}", f"{torch_s / ort_s:.2f}x",
            f"{step_torch:.3f}", f"{step_ort:.3f}", f"{step_torch / step_ort:.2f}x"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet-lite0", help=f"comma-separated, of {list(RECIPES)}")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="search steps timed per prune call")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (and onnxruntime's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(name, args.batch_size, args.steps, args.threads) for name in args.models.split(",") if name]
    header = ["model", "batch", "features", "teacher in torch, s", "teacher in onnxruntime, s", "ratio",
              "search step, torch teacher, s", "search step, onnxruntime teacher, s", "ratio"]
    print(markdown_table(header, rows))
    print()
    print(f"Teacher: median of {REPEATS} runs of one calibration batch (outputs and the default feature points) "
          f"after one warm-up. Search step: one library `prune` call each way, {args.steps} search steps, no "
          "fine-tune or refit, no time budget, `report.seconds.search / steps`.\n")
    print(footer("tools.bench_step_time", argv))


if __name__ == "__main__":
    main()
