"""Benchmark: ``prune`` on large models, peak resident memory and time per step against native torch.

    python -m tools.bench_large                      # both models, print the table
    python -m tools.bench_large --write              # also replace "## Large models" in docs/benchmarks.md
    python -m tools.bench_large --models bert6 --steps 4 --finetune-steps 3 --batch 8
    python -m tools.bench_large --scale --models resnet50 bert12 --write   # modes x 1 and 2 processes (torchrun)
    python -m tools.bench_large --scale --models resnet50 --modes nm --procs 2   # one row of that table

Every measurement runs in a fresh subprocess (peak RSS is per process): ``size`` (fp32 weights, activation
bytes of one forward pass, native and executor), ``native`` (forward + cross-entropy + backward + Adam of the
torch module the ONNX came from), ``prune`` (the library call, block mode 16x8x1x1 at 50%), then ``native``
again; the ratio divides the median search step by the median native step of the runs around it. ``steps``
times native / executor / executor-with-soft-mask steps interleaved in one process, to split the gap.
Times are process CPU time (the machine is shared) with one torch thread on every side.

``--scale`` measures ``prune`` per pruning mode in one process and data-parallel in two (torchrun, gloo, the
global batch split): each process's peak RSS (ru_maxrss) and median search / fine-tune step times (wall and
process CPU), with glibc's heap tunables set as the CLI sets them; its section is "## Large models: modes
and processes".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tools.large_models import LARGE_MODELS, build, export, sample_data

__all__ = ["main"]

HEADING = "## Large models"
SCALE_HEADING = "## Large models: modes and processes"
SCALE_MODES = {"resnet50": ("block", "channel", "nm"), "bert6": ("block", "channel"), "bert12": ("block",)}
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MEMORY_TARGET, TIME_TARGET = 4.0, 1.3
MIB = 2.0**20


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Memory:
    """Samples VmRSS every ``interval`` s in a thread; keeps the peak per stage (the caller names stages)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.stage, self.peaks, self.interval = "start", {}, interval
        self.baseline = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self, stage: str) -> None:
        self.sample()
        self.stage = stage
        self.sample()

    def sample(self) -> None:
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), _rss())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return {"baseline": self.baseline, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "stages": self.peaks}


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# --------------------------------------------------------------------------- workers (one per subprocess)


def _activation_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of every tensor the ops of ``fn()`` allocate (outputs that alias an input are views: skipped)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    total = 0

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal total
            out = func(*args, **(kwargs or {}))
            inputs = {a.untyped_storage().data_ptr() for a in torch.utils._pytree.tree_leaves((args, kwargs))
                      if isinstance(a, torch.Tensor)}
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                    total += t.numel() * t.element_size()
            return out

    with torch.no_grad(), Count():
        fn()
    return total


def _feeds(name: str, batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in sample_data(build(name), batch, seed).items()}


def work_size(name: str, onnx_path: Path, batch: int, **_: Any) -> dict[str, Any]:
    from smart_onnx.executor import Executor
    from smart_onnx.model import load_model

    model = build(name)
    feeds = _feeds(name, batch)
    executor = Executor(load_model(onnx_path)).eval()
    return {
        "weights": sum(p.numel() * p.element_size() for p in model.module.parameters()),
        "params": sum(p.numel() for p in model.module.parameters()),
        "activations": _activation_bytes(lambda: model.module(*feeds.values())),
        "executor_activations": _activation_bytes(lambda: executor(feeds)),
    }


def _native_step(module: torch.nn.Module, feeds: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
                 labels: torch.Tensor) -> None:
    loss = torch.nn.functional.cross_entropy(module(*feeds.values()), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def work_native(name: str, batch: int, repeats: int, **_: Any) -> dict[str, Any]:
    model = build(name)
    feeds = _feeds(name, batch)
    memory = Memory()
    opt = torch.optim.Adam(model.module.parameters(), lr=1e-4)
    labels = torch.zeros(batch, dtype=torch.long)
    memory.mark("native")
    times = []
    for _ in range(repeats + 1):
        wall, cpu = _clocks()
        _native_step(model.module, feeds, opt, labels)
        w2, c2 = _clocks()
        times.append((w2 - wall, c2 - cpu))
    return {"memory": memory.stop(), "steps": times[1:]}


def _wrap(owner: Any, attr: str, before: Callable[[], None], after: Callable[[], None] | None = None) -> None:
    inner = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        before()
        try:
            return inner(*args, **kwargs)
        finally:
            if after:
                after()

    setattr(owner, attr, wrapper)


def work_prune(name: str, onnx_path: Path, batch: int, steps: int, finetune_steps: int, calib: int, holdout: int,
               **_: Any) -> dict[str, Any]:
    import smart_onnx.prune as prune_mod
    import smart_onnx.search.ranking as ranking_mod
    import smart_onnx.search.search as search_mod
    import smart_onnx.search.trainer as trainer_mod
    from smart_onnx.data import Dataset
    from smart_onnx.model import load_model
    from smart_onnx.prune import PruneOptions, prune
    from smart_onnx.search import SearchConfig, StepInfo

    model = load_model(onnx_path)
    lm = build(name)
    calib_data = Dataset(sample_data(lm, calib, seed=1))
    holdout_data = Dataset(sample_data(lm, holdout, seed=2))
    del lm
    memory = Memory()
    marks: dict[str, tuple[float, float]] = {}
    steps_log: list[tuple[str, float, float]] = []
    hardened = [0]

    def mark(stage: str) -> Callable[[], None]:
        def set_stage() -> None:
            memory.mark(stage)
            marks["last"] = _clocks()
        return set_stage

    def before_harden() -> None:
        mark("initial harden" if hardened[0] == 0 else "final harden")()

    def after_harden() -> None:
        hardened[0] += 1
        mark("search" if hardened[0] == 1 else "finetune")()

    for owner, attr, stage in ((prune_mod, "analyze", "analysis"), (prune_mod, "Executor", "import"),
                               (search_mod, "activation_stats", "statistics"),
                               (trainer_mod._Teacher, "__init__", "teacher"),
                               (prune_mod, "set_weights", "export"), (prune_mod, "check_rewrite", "verify (ORT)"),
                               (prune_mod, "evaluate", "eval (ORT)")):
        _wrap(owner, attr, mark(stage))
    # The masked model is run in onnxruntime before the rewrite, which is export again.
    _wrap(prune_mod, "_masked_outputs", mark("verify (ORT)"), mark("export"))
    _wrap(ranking_mod, "harden_to_target", before_harden, after_harden)

    def progress(info: StepInfo) -> None:
        now = _clocks()
        wall, cpu = marks.get("last", now)
        steps_log.append((info.stage, now[0] - wall, now[1] - cpu))
        memory.sample()
        marks["last"] = now

    cfg = SearchConfig(sparsity=0.5, steps=steps, finetune_steps=finetune_steps, batch_size=batch, stats_batches=1)
    options = PruneOptions(mode="block", search=cfg, latency=False)
    torch.manual_seed(0)
    outcome = prune(model, calib_data, holdout_data, options, progress=progress)
    return {"memory": memory.stop(), "steps": steps_log, "seconds": outcome.report.seconds.to_dict(),
            "achieved": outcome.report.sparsity.achieved_params}


def work_steps(name: str, onnx_path: Path, batch: int, repeats: int, **_: Any) -> dict[str, Any]:
    """Native / executor / executor + soft block mask steps, interleaved (rotating order) in one process."""
    from smart_onnx.executor import Executor
    from smart_onnx.graph import analyze
    from smart_onnx.model import load_model
    from smart_onnx.search import BlockSpace
    from smart_onnx.search.soft_topk import soft_topk

    model = load_model(onnx_path)
    lm = build(name)
    feeds = _feeds(name, batch)
    labels = torch.zeros(batch, dtype=torch.long)
    executor = Executor(model)
    space = BlockSpace(analyze(model, {k: (1, *v.shape[1:]) for k, v in feeds.items()}).layers, (16, 8, 1, 1))
    costs = space.costs("params")
    scores = torch.nn.Parameter(torch.randn(space.num_units, dtype=costs.dtype))
    params = [p for p in executor.weights.parameters() if p.numel() > 1]
    opt_w, opt_m = torch.optim.Adam(params, lr=1e-4), torch.optim.Adam([scores], lr=0.05)
    opt_n = torch.optim.Adam(lm.module.parameters(), lr=1e-4)

    def run_executor(masked: bool) -> None:
        transforms = space.transforms(soft_topk(scores, costs, 0.5 * float(costs.sum()), 0.5)) if masked else None
        loss = torch.nn.functional.cross_entropy(executor(feeds, transforms=transforms)["logits"], labels)
        opt_w.zero_grad(set_to_none=True)
        opt_m.zero_grad(set_to_none=True)
        loss.backward()
        opt_w.step()
        if masked:
            opt_m.step()

    sides: dict[str, Callable[[], None]] = {
        "native": lambda: _native_step(lm.module, feeds, opt_n, labels),
        "executor": lambda: run_executor(False),
        "executor+mask": lambda: run_executor(True),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides)
    for i in range(repeats + 1):
        for key in order[i % 3:] + order[:i % 3]:
            start = time.process_time()
            sides[key]()
            if i:
                times[key].append(time.process_time() - start)
    return {"cpu": times}


def work_scale(name: str, onnx_path: Path, mode: str, batch: int, steps: int, finetune_steps: int, calib: int,
               holdout: int, **_: Any) -> dict[str, Any]:
    """``prune`` in ``mode``, data-parallel when torchrun started this process (one rank's numbers)."""
    from smart_onnx.data import Dataset
    from smart_onnx.model import load_model
    from smart_onnx.prune import PruneOptions, prune
    from smart_onnx.search import SearchConfig, StepInfo, distributed

    distributed.init_from_env("cpu")
    model = load_model(onnx_path)
    lm = build(name)
    calib_data, holdout_data = Dataset(sample_data(lm, calib, seed=1)), Dataset(sample_data(lm, holdout, seed=2))
    del lm
    steps_log: list[tuple[str, float, float]] = []
    last = list(_clocks())

    def progress(info: StepInfo) -> None:
        now = _clocks()
        steps_log.append((info.stage, now[0] - last[0], now[1] - last[1]))
        last[:] = now

    # No refit: data-parallel since it sums per rank, but still minutes per mode on the shared 2-core machine
    # (218 s of a 5-minute two-process ResNet-50 run when every rank ran it whole); tools/memory_stages.py
    # measures its peak.
    cfg = SearchConfig(sparsity=None if mode == "nm" else 0.5, steps=steps, finetune_steps=finetune_steps,
                       batch_size=batch, stats_batches=1, time_budget=None, refit=False)
    outcome = prune(model, calib_data, holdout_data, PruneOptions(mode=mode, search=cfg, latency=False),
                    progress=progress)
    result = {"rank": distributed.rank(), "world": distributed.world_size(), "steps": steps_log,
              "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "achieved": None if outcome is None else outcome.report.sparsity.achieved_params,
              "seconds": None if outcome is None else outcome.report.seconds.to_dict()}
    distributed.shutdown()
    return result


WORKERS = {"size": work_size, "native": work_native, "prune": work_prune, "steps": work_steps, "scale": work_scale}


# --------------------------------------------------------------------------- driver


def _spawn(worker: str, **kwargs: Any) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        args = json.dumps({**kwargs, "onnx_path": str(kwargs["onnx_path"])})
        subprocess.run([sys.executable, "-m", "tools.bench_large", "--worker", worker, "--args", args,
                        "--result", out.name], check=True)
        return json.loads(Path(out.name).read_text())


def _onnx(name: str, folder: Path) -> Path:
    path = folder / f"{name}.onnx"
    if not path.exists():
        export(build(name), path)
    return path


def measure_scale(name: str, folder: Path, procs: int, mode: str, **kw: Any) -> dict[str, Any]:
    """One ``scale`` run: ``procs`` processes (torchrun when more than one); every rank's result."""
    from smart_onnx.cli._heap import HEAP_TUNABLES

    path = _onnx(name, folder)
    launcher = [] if procs == 1 else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
    env = {**os.environ, "GLIBC_TUNABLES": HEAP_TUNABLES, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = json.dumps({"name": name, "onnx_path": str(path), "mode": mode, **kw})
        subprocess.run([sys.executable, *launcher, "-m", "tools.bench_large", "--worker", "scale", "--args", args,
                        "--result", str(out)], check=True, env=env)
        ranks = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("result.json*"))]
    return {"name": name, "label": LARGE_MODELS[name]().label, "procs": procs, "mode": mode,
            "size": _spawn("size", name=name, onnx_path=path, batch=kw["batch"] // procs), "ranks": ranks, **kw}


def measure(name: str, folder: Path, **kw: Any) -> dict[str, Any]:
    path = _onnx(name, folder)
    run = {"name": name, "label": LARGE_MODELS[name]().label, **kw}
    common = {"name": name, "onnx_path": path, **kw}
    run["size"] = _spawn("size", **common)
    natives = [_spawn("native", **common)]
    run["prune"] = _spawn("prune", **common)
    natives.append(_spawn("native", **common))
    run["native"] = natives
    if kw.get("split"):
        run["split"] = _spawn("steps", **common)
    return run


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    size, prune_run = run["size"], run["prune"]
    reference = size["weights"] + size["activations"]
    steps = {stage: [c for s, _, c in prune_run["steps"] if s == stage] for stage in ("search", "finetune")}
    # The first step of each stage pays one-off costs (allocator growth, first-call dispatch): dropped if possible.
    search = _median(steps["search"][1:] or steps["search"])
    finetune = _median(steps["finetune"][1:] or steps["finetune"])
    native = _median([c for n in run["native"] for _, c in n["steps"]])
    mem = prune_run["memory"]
    return {
        "reference": reference, "peak": mem["peak"], "baseline": mem["baseline"],
        "memory_ratio": mem["peak"] / reference, "native_peak": max(n["memory"]["peak"] for n in run["native"]),
        "search": search, "finetune": finetune, "native": native,
        "search_ratio": search / native, "finetune_ratio": finetune / native,
    }


def table(runs: list[dict[str, Any]]) -> str:
    head = ("| model | weights | fp32 weights MiB | activations MiB (executor) | peak RSS MiB (process at start) | "
            "peak / (weights + activations) | native training peak MiB | native step s | search step s | "
            "fine-tune step s | search / native | fine-tune / native |")
    lines = [head, "|---" + "|---:" * 11 + "|"]
    for run in runs:
        s, z = summarize(run), run["size"]
        lines.append(
            f"| {run['label']} | {z['params'] / 1e6:.1f} M | {z['weights'] / MIB:.0f} | "
            f"{z['activations'] / MIB:.0f} ({z['executor_activations'] / MIB:.0f}) | "
            f"{s['peak'] / MIB:.0f} ({s['baseline'] / MIB:.0f}) | {s['memory_ratio']:.2f} | "
            f"{s['native_peak'] / MIB:.0f} | {s['native']:.2f} | {s['search']:.2f} | {s['finetune']:.2f} | "
            f"{s['search_ratio']:.2f} | {s['finetune_ratio']:.2f} |")
    return "\n".join(lines)


def details(runs: list[dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        mem = run["prune"]["memory"]
        stages = ", ".join(f"{k} {v / MIB:.0f}" for k, v in mem["stages"].items())
        seconds = ", ".join(f"{k} {v:.1f}" for k, v in run["prune"]["seconds"].items())
        lines.append(f"- {run['label']}: peak RSS by stage (MiB): {stages}. "
                     f"report[\"seconds\"] (wall): {seconds}.")
        if "split" in run:
            cpu = {k: _median(v) for k, v in run["split"]["cpu"].items()}
            lines.append("  Interleaved CPU s per step: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                         + f" (executor / native {cpu['executor'] / cpu['native']:.2f}, "
                         f"executor+mask / native {cpu['executor+mask'] / cpu['native']:.2f}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert6"], choices=list(LARGE_MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="search steps")
    parser.add_argument("--finetune-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed native steps per native run")
    parser.add_argument("--calib", type=int, default=16, help="calibration samples")
    parser.add_argument("--holdout", type=int, default=8, help="evaluation samples")
    parser.add_argument("--split", action="store_true", help="also time native/executor/masked steps interleaved")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "smart_onnx_large")
    parser.add_argument("--json", type=Path, help="also save the raw measurements here")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of {DOC.name}")
    parser.add_argument("--scale", action="store_true",
                        help=f"prune per mode in 1 and 2 processes (torchrun); section '{SCALE_HEADING}'")
    parser.add_argument("--modes", nargs="+", choices=("block", "channel", "nm"),
                        help="with --scale: only these of each model's modes (default: all it has)")
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2], help="with --scale: process counts")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.worker:
        kwargs = json.loads(args.args)
        kwargs["onnx_path"] = Path(kwargs["onnx_path"])
        result = WORKERS[args.worker](**kwargs)
        rank = os.environ.get("RANK", "0")  # under torchrun every rank reports
        (args.result if rank == "0" else args.result.with_name(f"{args.result.name}.{rank}")).write_text(
            json.dumps(result))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    if args.scale:
        _scale(args, argv)
        return
    kw = {"batch": args.batch, "steps": args.steps, "finetune_steps": args.finetune_steps, "repeats": args.repeats,
          "calib": args.calib, "holdout": args.holdout, "split": args.split}
    runs = [measure(name, args.folder, **kw) for name in args.models]
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    body = f"{table(runs)}\n\n{details(runs)}\n"
    sys.stdout.write(body)
    if args.write:
        _write(runs, body, argv)


def _write(runs: list[dict[str, Any]], body: str, argv: list[str] | None) -> None:
    from tools._bench_common import machine, write_section

    command = "python -m tools.bench_large " + " ".join(sys.argv[1:] if argv is None else argv)
    worst = [summarize(r) for r in runs]
    verdict = (f"Worst peak / (weights + activations) {max(s['memory_ratio'] for s in worst):.2f} "
               f"(target {MEMORY_TARGET}); worst search step / native {max(s['search_ratio'] for s in worst):.2f} "
               f"(target {TIME_TARGET}).")
    intro = (f"`prune` in block mode (16x8x1x1, 50%) with random weights and random inputs, batch {runs[0]['batch']}, "
             f"{runs[0]['steps']} search + {runs[0]['finetune_steps']} fine-tune steps, {runs[0]['calib']} "
             f"calibration and {runs[0]['holdout']} evaluation samples. Peak RSS is the prune process's ru_maxrss "
             "(a fresh subprocess; 'process at start' is its RSS with torch, the model and data loaded). "
             "Activations: bytes of every tensor allocated by one no-grad forward pass at that batch (native "
             "module; the executor's in brackets). Step times are process CPU time with one torch thread, "
             "medians without each stage's first step; native = forward + cross-entropy + backward + Adam of the "
             "torch module the ONNX was exported from, measured in subprocesses just before and after the prune.")
    text = (f"{intro}\n\n{body}\n{verdict}\n\n- Command: `{command}`\n- Clock: process CPU time\n"
            f"- Machine: {machine()}\n- Date: {time.strftime('%Y-%m-%d', time.gmtime())}\n")
    write_section(HEADING, text)


def scale_table(runs: list[dict[str, Any]]) -> str:
    lines = ["| model | mode | processes | batch per process | peak RSS MiB per process | "
             "peak / (weights + activations of one batch) | search step s wall (CPU per process) | "
             "fine-tune step s wall (CPU per process) | sparsity |", "|---|---|---:" + "|---:" * 6 + "|"]
    for run in runs:
        peak = max(r["peak"] for r in run["ranks"])
        reference = run["size"]["weights"] + run["size"]["activations"]
        main = next(r for r in run["ranks"] if r["rank"] == 0)
        cells = []
        for stage in ("search", "finetune"):
            wall = [w for s, w, _ in main["steps"] if s == stage][1:]  # the first step pays one-off costs
            cpu = [c for s, _, c in main["steps"] if s == stage][1:]
            cells.append(f"{_median(wall):.2f} ({_median(cpu):.2f})")
        peaks = " / ".join(f"{r['peak'] / MIB:.0f}" for r in run["ranks"])
        lines.append(f"| {run['label']} | {run['mode']} | {run['procs']} | {run['batch'] // run['procs']} | "
                     f"{peaks} | {peak / reference:.2f} | "
                     f"{cells[0]} | {cells[1]} | {main['achieved']:.4f} |")
    return "\n".join(lines)


def _scale(args: argparse.Namespace, argv: list[str] | None) -> None:
    from tools._bench_common import machine, write_section

    args.folder.mkdir(parents=True, exist_ok=True)
    kw = {"batch": args.batch, "steps": args.steps, "finetune_steps": args.finetune_steps, "calib": args.calib,
          "holdout": args.holdout}
    runs = [measure_scale(name, args.folder, procs, mode, **kw)
            for name in args.models for mode in SCALE_MODES[name] if args.modes is None or mode in args.modes
            for procs in args.procs]
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    sys.stdout.write(scale_table(runs) + "\n")
    if args.write:
        command = "python -m tools.bench_large " + " ".join(sys.argv[1:] if argv is None else argv)
        write_section(SCALE_HEADING, scale_section(runs, command, machine()))


def scale_section(runs: list[dict[str, Any]], command: str, machine: str) -> str:
    """The text of the "modes and processes" section for these runs."""
    first = runs[0]
    body = scale_table(runs) + "\n"
    intro = (f"`prune` per mode at 50% (N:M: 2:4) with random weights and inputs, global batch {first['batch']}, "
             f"{first['steps']} search + {first['finetune_steps']} fine-tune steps, {first['calib']} calibration and "
             f"{first['holdout']} evaluation samples, no refit, no time budget, one torch thread per process, glibc "
             "heap tunables "
             "as the CLI sets them. 2 processes: `torchrun --standalone --nproc-per-node 2` (gloo), each training on "
             "half of every batch, rank 0 alone rewriting and evaluating. Peak RSS: each process's ru_maxrss "
             "(rank 0 first); the ratio divides the largest by the fp32 weights plus the activations of one "
             "no-grad forward pass at the batch per process. Step times: rank 0's medians without each stage's "
             "first step, wall clock and process CPU time.")
    return (f"{intro}\n\n{body}\n- Command: `{command}`\n- Clock: wall and process CPU time\n"
            f"- Machine: {machine}\n- Date: {time.strftime('%Y-%m-%d', time.gmtime())}\n")


if __name__ == "__main__":
    main()
