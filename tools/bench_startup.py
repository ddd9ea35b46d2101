"""Start-up time of the commands a compiler pipeline calls many times, next to ``python -c "import onnx"``.

Each command runs in a fresh interpreter (``python -m smart_onnx.cli.main ...``, what the
``smart-onnx`` script runs); the wall time is the median of ``--repeats`` runs after one
warm-up run (which fills the OS file cache). ``--before PATH`` also times the same commands
with ``PATH`` (a checkout of an older commit, e.g. from ``git worktree add``) first on
``PYTHONPATH``, in the same rounds, for a before/after table.

    python -m tools.bench_startup --repeats 7 --write
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tools._bench_common import ROOT, emit, footer, markdown_table

HEADING = "## Start-up time"
MODEL = ROOT / "models" / "fashion_resnet.onnx"
COMMANDS: list[tuple[str, list[str]]] = [
    ('python -c "import onnx"', ["-c", "import onnx"]),
    ('python -c "import torch"', ["-c", "import torch"]),
    ("smart-onnx --version", ["-m", "smart_onnx.cli.main", "--version"]),
    ("smart-onnx targets", ["-m", "smart_onnx.cli.main", "targets"]),
    ("smart-onnx check models/fashion_resnet.onnx", ["-m", "smart_onnx.cli.main", "check", str(MODEL)]),
    ("smart-onnx inspect models/fashion_resnet.onnx", ["-m", "smart_onnx.cli.main", "inspect", str(MODEL)]),
]


def walls(runs: list[tuple[list[str], dict[str, str]]], repeats: int) -> list[float]:
    """Median wall seconds of each ``python args`` under its env, timed round-robin (one warm-up round first),
    so that every command sees the same machine load. Each runs in its checkout (``python -m`` puts the
    working directory first on the path)."""
    times: list[list[float]] = [[] for _ in runs]
    for i in range(repeats + 1):
        for k, (args, env) in enumerate(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=env["PYTHONPATH"])
            if i:
                times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def modules(args: list[str], env: dict[str, str]) -> str:
    """Which of torch / matplotlib / onnxruntime the command imports."""
    if args[0] == "-c":
        return "-"
    probe = ("import runpy, sys\nsys.argv = ['smart-onnx', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('smart_onnx.cli.main', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('MODULES=' + ','.join(m for m in ('torch', 'matplotlib', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, *args[2:]], env=env, capture_output=True, text=True,
                         cwd=env["PYTHONPATH"]).stdout
    found = out.rsplit("MODULES=", 1)[-1].strip()
    return found or "none"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", type=Path, default=None, help="an older checkout to time the same commands in")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    env_now = {**os.environ, "PYTHONPATH": str(ROOT)}
    env_before = {**os.environ, "PYTHONPATH": str(args.before)} if args.before else None
    header = ["command", "median wall s", "imports (of torch, matplotlib, onnxruntime)"]
    if env_before:
        header[1:1] = ["before: median wall s", "before: imports"]
    envs = [env_now] + ([env_before] if env_before else [])
    medians = walls([(cmd, env) for _, cmd in COMMANDS for env in envs], args.repeats)
    rows = []
    for i, (label, cmd) in enumerate(COMMANDS):
        now = medians[i * len(envs)]
        row = [f"`{label}`", f"{now:.2f}", modules(cmd, env_now)]
        if env_before:
            row[1:1] = [f"{medians[i * len(envs) + 1]:.2f}", modules(cmd, env_before)]
        rows.append(row)
    before = ""
    if env_before:
        commit = subprocess.run(["git", "-C", str(args.before), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or str(args.before)
        before = (f" 'before' is commit {commit} (the same commands with that checkout first on PYTHONPATH, timed "
                  "in the same rounds).")
    body = "\n".join([
        "Wall time of one command in a fresh interpreter, median of "
        f"{args.repeats} runs after a warm-up round (file cache warm), all commands timed round-robin so they share "
        "the machine's load; the bundled Fashion-MNIST ResNet as MODEL. "
        "`--version`, `targets`, `check` and `inspect` load the command's module only when it runs, and the "
        f"hardware package imports neither the search nor the rewriter, so none of them imports torch.{before}",
        "",
        markdown_table(header, rows),
        "",
        footer("tools.bench_startup", argv),
    ])
    emit(HEADING, body, args.write)


if __name__ == "__main__":
    main()
