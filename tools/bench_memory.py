"""Benchmark: peak resident memory of a whole ``smart-onnx prune`` run (issue 13, "memory that stays flat").

    python -m tools.bench_memory                   # fashion 1x/10x samples, CRNN 51/510 samples; print the table
    python -m tools.bench_memory --stages          # also the peak of every stage (a second, instrumented run)
    python -m tools.bench_memory --write           # also replace "## Peak memory of prune" in docs/benchmarks.md

Each run is the real CLI in a fresh child process (``python -m smart_onnx.cli.main prune ...``, run from this
checkout); its peak is the child's own ``ru_maxrss`` (``os.wait4``). The reference figure is the fp32 weights
of the ONNX file plus one batch of activations: the bytes of every value the graph's nodes produce in one
forward pass at ``--batch-size`` (the executor's transform hook on each node output). Target: peak <= 4 x
reference and no growth with the number of calibration samples. ``--stages`` reruns each case in-process
with the peak RSS (VmHWM, reset per stage through /proc/self/clear_refs) of each stage of ``prune``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools._bench_common import ROOT, command_line, emit, machine, markdown_table, today
from tools.memory_stages import run_with_stages

HEADING = "## Peak memory of prune"
TARGET = 4.0
MIB = 2.0**20


@dataclass(frozen=True)
class Case:
    """One prune run: model, calibration file and its sample count, evaluation file."""

    label: str
    model: Path
    calib: Path
    samples: int
    eval: Path | None  # None: the CLI holds out 20% of the calibration file


def _tile(src: Path, dst: Path, factor: int) -> int:
    """``src``'s arrays (labels included) repeated ``factor`` times along the sample axis; returns the count."""
    with np.load(src) as z:
        arrays = {k: np.concatenate([z[k]] * factor) for k in z.files}
    np.savez(dst, **arrays)
    return len(next(iter(arrays.values())))


def prepare(folder: Path, cases: Sequence[str], crnn_classes: int, split: bool = False) -> list[Case]:
    """Write the models and data files the cases need into ``folder`` (``split``: no evaluation files)."""
    out: list[Case] = []
    if "fashion" in cases:
        model, calib, evaluation = (ROOT / "models" / f for f in ("fashion_resnet.onnx", "fashion_calib.npz",
                                                                 "fashion_eval.npz"))
        with np.load(calib) as z:
            n = len(z["input"])
        evaluation = None if split else evaluation
        out.append(Case("Fashion ResNet, 1x calibration", model, calib, n, evaluation))
        n10 = _tile(calib, folder / "fashion_calib_x10.npz", 10)
        out.append(Case("Fashion ResNet, 10x calibration (tiled)", model, folder / "fashion_calib_x10.npz", n10,
                        evaluation))
    if "crnn" in cases:
        from devkit.crnn import build, export, sample_images

        model = folder / "crnn.onnx"
        export(build(crnn_classes), model)
        np.savez(folder / "crnn_eval.npz", image=sample_images(16, seed=2))
        for n in (51, 510):
            np.savez(folder / f"crnn_calib_{n}.npz", image=sample_images(n, seed=1))
            out.append(Case(f"CRNN ({crnn_classes} classes), {n} samples", model, folder / f"crnn_calib_{n}.npz",
                            n, None if split else folder / "crnn_eval.npz"))
    return out


def reference_bytes(model_path: Path, calib: Path, batch: int) -> tuple[int, int]:
    """(weights, activations) bytes: the ONNX file's initializers, every node output of one forward at ``batch``."""
    import torch

    from smart_onnx.data import load_dataset
    from smart_onnx.executor import Executor
    from smart_onnx.model import iter_graphs, load_model, tensor_to_array

    model = load_model(model_path)
    weights = sum(tensor_to_array(t).nbytes for g in iter_graphs(model.graph) for t in g.initializer)
    data = load_dataset(calib, model.inputs)
    feeds = {k: torch.from_numpy(np.ascontiguousarray(a[:batch])) for k, a in data.arrays.items()}
    sizes: dict[str, int] = {}

    def record(name: str):
        def hook(v):
            if isinstance(v, torch.Tensor):
                sizes[name] = v.numel() * v.element_size()
            return v
        return hook

    names = [o for node in model.graph.node for o in node.output if o]
    with torch.no_grad():
        Executor(model)(feeds, transforms={n: record(n) for n in names})
    return weights, sum(sizes.values())


def prune_argv(case: Case, out: Path, steps: int, finetune: int, batch: int, threads: int) -> list[str]:
    evaluation = [] if case.eval is None else ["--eval-data", str(case.eval)]
    return ["prune", str(case.model), "--data", str(case.calib), *evaluation, "--sparsity", "0.5",
            "--steps", str(steps), "--finetune-steps", str(finetune), "--batch-size", str(batch),
            *(["--threads", str(threads)] if threads else []), "--no-latency", "-q", "-o", str(out)]


def peak_of(cmd: Sequence[str]) -> tuple[int, float]:
    """Run ``cmd`` from the repository root; (its peak RSS in bytes, wall seconds). Raises on a failed run."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start


def baseline() -> int:
    """Peak RSS of a process that only imports what the CLI imports (torch, onnx, onnxruntime, smart_onnx)."""
    code = "import smart_onnx.cli.main, smart_onnx.prune, onnxruntime, torch"
    return peak_of([sys.executable, "-c", code])[0]


def _mib(b: float) -> str:
    return f"{b / MIB:.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["fashion", "crnn"], choices=["fashion", "crnn"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--finetune-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the prune runs (0: torch's default)")
    parser.add_argument("--crnn-classes", type=int, default=6625)
    parser.add_argument("--split", action="store_true",
                        help="no --eval-data: the CLI holds out 20%% of the calibration samples for its evaluation")
    parser.add_argument("--stages", action="store_true", help="also run each case instrumented, peak per stage")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    parser.add_argument("--note", default="", help="a line added under the table (e.g. which fix was measured)")
    parser.add_argument("--write", action="store_true", help=f"replace '{HEADING}' in docs/benchmarks.md")
    args = parser.parse_args(argv)
    where, when = machine(), today()
    rows, details, records = [], [], []
    base = baseline()
    with tempfile.TemporaryDirectory(prefix="bench_memory.") as tmp:
        folder = Path(tmp)
        for case in prepare(folder, args.cases, args.crnn_classes, args.split):
            weights, acts = reference_bytes(case.model, case.calib, args.batch_size)
            pargv = prune_argv(case, folder / "pruned.onnx", args.steps, args.finetune_steps, args.batch_size,
                               args.threads)
            peak, wall = peak_of([sys.executable, "-m", "smart_onnx.cli.main", *pargv])
            ref = weights + acts
            record = {"case": case.label, "samples": case.samples, "split": case.eval is None, "weights": weights,
                      "activations": acts,
                      "peak": peak, "baseline": base, "wall_s": wall}
            rows.append([case.label, case.samples, _mib(weights), _mib(acts), _mib(peak), _mib(peak - base),
                         f"{peak / ref:.1f}", f"{(peak - base) / ref:.1f}", f"{wall:.0f}"])
            if args.stages:
                stages = run_with_stages(pargv, cwd=ROOT)
                record["stages"] = stages
                details.append(f"- {case.label}: " + ", ".join(
                    f"{s['stage']} {_mib(s['peak'])} ({_mib(s['end'])})" for s in stages))
            records.append(record)
            sys.stderr.write(f"{case.label}: peak {_mib(peak)} MiB, {wall:.0f} s\n")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    threads = f"--threads {args.threads} " if args.threads else ""
    header = ["case", "calibration samples", "fp32 weights MiB", "activations MiB (1 batch)", "peak RSS MiB",
              "peak - process at start MiB", "peak / (weights + activations)", "(peak - start) / (w + a)",
              "wall s"]
    body = [
        f"`smart-onnx prune` (block mode, 50%, default target) in a fresh child process, {args.steps} search + "
        f"{args.finetune_steps} fine-tune steps, batch {args.batch_size}, `{threads}--no-latency`; "
        + ("no --eval-data: 20% of the calibration samples are held out for the evaluation. " if args.split else
           "each case's evaluation data fixed (the CRNN: 16 random lines), so only the calibration set grows. ") +
        f"Peak RSS is the child's ru_maxrss. 'Process at start' ({_mib(base)} MiB) is the peak of a process that "
        f"only imports torch, onnxruntime and smart_onnx. Activations: bytes of every node output of one forward "
        f"at batch {args.batch_size}. Target: peak <= {TARGET:g} x (weights + activations), flat in the samples.",
        "", markdown_table(header, rows), "",
    ]
    if args.note:
        body += [args.note, ""]
    if details:
        body += ["Peak RSS per stage in MiB (RSS at the stage's end in brackets), from an instrumented "
                 "in-process run of the same command:", "", *details, ""]
    body += [f"- Command: `{command_line('tools.bench_memory', argv)}`", f"- Machine: {where}", f"- Date: {when}"]
    emit(HEADING, "\n".join(body) + "\n", args.write)


if __name__ == "__main__":
    main()
