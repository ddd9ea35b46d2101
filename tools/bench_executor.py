"""Benchmark: forward+backward time of the ONNX executor vs the native torch module it was exported from.

    python -m tools.bench_executor                 # print the table
    python -m tools.bench_executor --write         # also update docs/benchmarks.md
    python -m tools.bench_executor --profile vit   # top ops by self CPU time, executor vs native

Each step is ``sum(outputs).backward()`` on a batch of 32 on the CPU. Both modules are in
eval mode (BatchNorm uses running statistics, as the ONNX graph does). The two are timed
interleaved, alternating which goes first, after a warm-up; the ratio is the median of
the per-pair executor/native ratios.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from devkit.zoo import export, resnet_like, vit_block
from smart_onnx.executor import Executor
from smart_onnx.model import normalize
from tools._bench_common import DOC, emit, machine

__all__ = ["BENCHMARKS", "Result", "machine", "main", "run"]

HEADING = "## Executor vs native torch"
TARGET_RATIO = 1.15
BATCH = 32

# name -> builder of (native module, example input) at realistic layer widths
BENCHMARKS: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "resnet18-like 64x64": lambda: resnet_like(width=64, blocks=(2, 2, 2, 2), image=64, batch=BATCH, stem_stride=2),
    "vit-small-like (4 blocks, 64 tokens)": lambda: vit_block(
        dim=384, depth=4, heads=6, image=64, patch=8, batch=BATCH
    ),
}


@dataclass(frozen=True)
class Result:
    """Per-step times in seconds, ``native[i]`` and ``executor[i]`` measured back to back."""

    name: str
    params: int
    native: tuple[float, ...]
    executor: tuple[float, ...]

    @property
    def native_ms(self) -> float:
        return 1e3 * statistics.median(self.native)

    @property
    def executor_ms(self) -> float:
        return 1e3 * statistics.median(self.executor)

    @property
    def ratio(self) -> float:
        """Median of the per-pair ratios: robust to load that drifts during the run (a shared machine)."""
        return statistics.median(e / n for e, n in zip(self.executor, self.native))


# wall: elapsed time; cpu: this process's CPU time, which a busy shared machine disturbs less
# (use it with --threads 1, where idle worker threads cannot spin).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _step(fn: Callable[[], torch.Tensor], params: list[nn.Parameter]) -> float:
    for p in params:
        p.grad = None
    start = _clock()
    fn().backward()
    return _clock() - start


def _fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold each Conv2d -> BatchNorm2d pair of an ``nn.Sequential`` into the conv, in place.

    The exporter folds them into the ONNX Conv, so the native side must too, or the
    comparison would credit the executor with work the exporter removed.
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                seq[i + 1] = nn.Identity()
    return module


def _pair(name: str, opset: int) -> tuple[Callable[[], torch.Tensor], list, Callable[[], torch.Tensor], list, int]:
    native, x = BENCHMARKS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = export(native, x, dynamo=False, opset=opset)
    native = _fold_batchnorm(native)
    executor = Executor(normalize(proto)).eval()
    feed = {executor.input_names[0]: x}

    def run_native() -> torch.Tensor:
        return native(x).sum()

    def run_executor() -> torch.Tensor:
        return sum(v.sum() for v in executor(feed).values())

    nparams = sum(p.numel() for p in native.parameters())
    return run_native, list(native.parameters()), run_executor, list(executor.parameters()), nparams


def run(name: str, repeats: int = 7, warmup: int = 2, opset: int = 17) -> Result:
    """Time one benchmark: ``warmup`` untimed steps of each, then ``repeats`` interleaved timed steps."""
    run_native, native_params, run_exec, exec_params, nparams = _pair(name, opset)
    for _ in range(warmup):
        _step(run_native, native_params)
        _step(run_exec, exec_params)
    native_t, exec_t = [], []
    for i in range(repeats):
        # Alternate the order so neither side always runs on a cache the other warmed.
        if i % 2:
            exec_t.append(_step(run_exec, exec_params))
            native_t.append(_step(run_native, native_params))
        else:
            native_t.append(_step(run_native, native_params))
            exec_t.append(_step(run_exec, exec_params))
    return Result(name, nparams, tuple(native_t), tuple(exec_t))


def profile(name: str, rows: int = 15, opset: int = 17) -> str:
    """Top ops by self CPU time for one forward+backward step of each side."""
    run_native, native_params, run_exec, exec_params, _ = _pair(name, opset)
    tables = []
    for label, fn, params in (("native", run_native, native_params), ("executor", run_exec, exec_params)):
        _step(fn, params)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            _step(fn, params)
        tables.append(f"### {label}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
    return "\n".join(tables)


def table(results: list[Result]) -> str:
    lines = [
        "| model | params | native fwd+bwd (ms) | executor fwd+bwd (ms) | executor / native |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.params / 1e6:.1f} M | {r.native_ms:.1f} | {r.executor_ms:.1f} | {r.ratio:.3f} |")
    return "\n".join(lines)


def section(results: list[Result], command: str, clock: str = "wall", opset: int = 17) -> str:
    worst = max(r.ratio for r in results)
    verdict = "meets" if worst <= TARGET_RATIO else "misses"
    return (
        "Forward + backward (`sum(outputs).backward()`), batch 32, CPU, eval mode. The executor runs the ONNX\n"
        f"graph exported from the native module (legacy exporter, opset {opset}). Times are medians of the timed\n"
        "steps after a warm-up; the two sides run interleaved in one process and the ratio is the median of the\n"
        "per-pair ratios. The native ResNet has its Conv-BatchNorm pairs folded, as the exported graph does.\n\n"
        f"{table(results)}\n\n"
        f"Worst ratio {worst:.3f}: {verdict} the target of {TARGET_RATIO}.\n\n"
        "Below opset 20 the exporter writes GELU as Div/Erf/Add/Mul/Mul, which the executor runs op by op while\n"
        "native torch runs one fused kernel; this is most of the ViT gap (compare a run with `--opset 20`, where\n"
        "GELU is one Gelu op). On a shared machine prefer `--threads 1 --clock cpu`: wall time with several\n"
        "threads is dominated by other processes.\n\n"
        f"- Command: `{command}`\n"
        f"- Clock: {'elapsed (wall) time' if clock == 'wall' else 'process CPU time'}\n"
        f"- Machine: {machine()}\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--only", choices=["resnet", "vit"], help="run one benchmark")
    parser.add_argument("--profile", choices=["resnet", "vit"], help="print a profile instead of timing")
    parser.add_argument("--opset", type=int, default=17, help="opset the legacy exporter writes")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="what a step's time is")
    parser.add_argument("--write", action="store_true", help=f"update the section in {DOC}")
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)  # the exporters' warnings are not the benchmark's output
    names = list(BENCHMARKS)
    pick = {"resnet": names[0], "vit": names[1]}
    if args.profile:
        sys.stdout.write(profile(pick[args.profile], opset=args.opset) + "\n")
        return
    results = [run(n, args.repeats, args.warmup, args.opset) for n in ([pick[args.only]] if args.only else names)]
    command = "python -m tools.bench_executor " + " ".join(sys.argv[1:] if argv is None else argv)
    emit(HEADING, section(results, command.strip(), args.clock, args.opset), args.write)


if __name__ == "__main__":
    main()
