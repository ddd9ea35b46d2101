"""Peak RSS of each stage of one ``smart-onnx prune`` run, for finding where memory goes.

    python -m tools.memory_stages OUT.json prune MODEL --data D --sparsity 0.5 ...   # worker (one process)

The worker wraps the functions that start each stage (the CLI's load, the executor, analysis, the
teacher pass, activation statistics, hardening, refit, export, onnxruntime verify and eval) and runs the CLI
in-process. At every stage boundary it reads VmHWM (the peak since the last boundary) and VmRSS, then
resets VmHWM through ``/proc/self/clear_refs`` (Linux), so each stage's peak is exact, not sampled.
Functions that do not exist in this checkout are skipped, so the tool survives refactors of ``prune``.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from smart_onnx.cli._heap import HEAP_TUNABLES

__all__ = ["StageRecorder", "run_with_stages"]

Stage = str | Callable[[], str]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class StageRecorder:
    """Names the current stage; at each change records the finished stage's peak and end RSS."""

    def __init__(self) -> None:
        self.stage = "start (imports)"
        self.records: list[dict[str, Any]] = []

    def mark(self, stage: str) -> None:
        self.records.append({"stage": self.stage, "peak": _status("VmHWM"), "end": _status("VmRSS")})
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:  # not Linux, or not allowed: peaks become cumulative
            pass
        self.stage = stage

    def wrap(self, owner: Any, attr: str, enter: Stage, leave: Stage | None = None) -> None:
        """Mark ``enter`` when ``owner.attr`` is called (and ``leave`` when it returns); a callable names it then."""
        original = None if owner is None else getattr(owner, attr, None)
        if original is None:
            return

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.mark(enter() if callable(enter) else enter)
            try:
                return original(*args, **kwargs)
            finally:
                if leave is not None:
                    self.mark(leave() if callable(leave) else leave)

        setattr(owner, attr, wrapper)


def _install(rec: StageRecorder) -> None:
    import smart_onnx.cli.prune_cmd as cli_prune
    import smart_onnx.prune as prune_mod
    import smart_onnx.search.search as search_mod

    searched = [False]

    def after_search() -> str:
        searched[0] = True
        return "harden"

    rec.wrap(cli_prune, "load_model", "CLI: load model and data")
    rec.wrap(cli_prune, "prune", "prune: executor", "CLI: write files")
    rec.wrap(prune_mod, "analyze", "analysis")
    rec.wrap(prune_mod, "run_search", "search: setup")
    # The dense teacher's pass: a method of search's _Trainer, later a _Teacher class in search or search.trainer.
    rec.wrap(getattr(search_mod, "_Trainer", None), "_teacher_outputs", "teacher outputs", "search: setup")
    for module in (search_mod, _optional("smart_onnx.search.trainer")):
        rec.wrap(getattr(module, "_Teacher", None), "__init__", "teacher outputs", "search: setup")
    rec.wrap(search_mod, "activation_stats", "activation statistics", "search: setup")
    # Hardening and the search steps: search/ranking.py and search/phases.py (before: functions of search.search).
    for module in (search_mod, _optional("smart_onnx.search.ranking")):
        for name in ("_harden_to_target", "harden_to_target"):
            rec.wrap(module, name, "harden", lambda: "fine-tune steps" if searched[0] else "search: setup")
    rec.wrap(search_mod, "_joint_search", "search steps", after_search)
    rec.wrap(getattr(_optional("smart_onnx.search.phases"), "SearchPhase", None), "run", "search steps", after_search)
    rec.wrap(search_mod, "refit_layers", "refit", "fine-tune steps")
    rec.wrap(prune_mod, "set_weights", "export: rewrite")
    rec.wrap(prune_mod, "make_session", "export: ORT session")
    rec.wrap(prune_mod, "_verify_export", "export: verify", "report")  # before the masked model was run first
    rec.wrap(prune_mod, "_masked_outputs", "export: masked model (executor, ORT)", "export: rewrite")
    rec.wrap(prune_mod, "check_rewrite", "export: verify", "report")
    rec.wrap(prune_mod, "evaluate", "eval (ORT)", "report")


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _worker(out: Path, argv: list[str]) -> None:
    rec = StageRecorder()
    _install(rec)
    from smart_onnx.cli.main import cli

    rec.mark("CLI: options")
    try:
        cli.main(args=argv, prog_name="smart-onnx", standalone_mode=False)
    finally:
        rec.mark("end")
        out.write_text(json.dumps(rec.records, indent=1) + "\n")


def run_with_stages(prune_argv: Sequence[str], cwd: Path) -> list[dict[str, Any]]:
    """Run the CLI arguments in a fresh instrumented process; per stage {stage, peak, end} in bytes."""
    with tempfile.TemporaryDirectory(prefix="memory_stages.") as tmp:
        out = Path(tmp) / "stages.json"
        # The heap settings the real CLI restarts itself with (smart_onnx/cli/_heap.py), unless chosen already.
        env = {"GLIBC_TUNABLES": HEAP_TUNABLES, **os.environ}
        subprocess.run([sys.executable, "-m", "tools.memory_stages", str(out), *prune_argv], cwd=cwd, check=True,
                       stdout=subprocess.DEVNULL, env=env)
        records = json.loads(out.read_text())
    return _merge(records)


def _merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive records of one stage name (a stage entered again) keep the larger peak and the last end."""
    merged: list[dict[str, Any]] = []
    for r in records:
        if merged and merged[-1]["stage"] == r["stage"]:
            merged[-1] = {"stage": r["stage"], "peak": max(merged[-1]["peak"], r["peak"]), "end": r["end"]}
        else:
            merged.append(dict(r))
    return merged

if __name__ == "__main__":
    _worker(Path(sys.argv[1]), sys.argv[2:])
