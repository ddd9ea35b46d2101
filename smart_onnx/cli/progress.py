"""Progress of ``smart-onnx prune`` on stderr: bars on a terminal, plain throttled lines anywhere else."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import click

from smart_onnx.search import StepInfo

__all__ = ["ProgressReporter", "format_duration"]

# Stage names are padded to this width so bar labels and plain lines line up ("search  " / "finetune").
_LABEL_WIDTH = 8


def format_duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on: a clock reading is quicker to take in than a count of seconds."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressReporter:
    """Called with each :class:`StepInfo`; shows progress per stage in whatever form the stream can take.

    On a terminal this draws click progress bars. Elsewhere (CI logs, ``2> log``) click's bars print
    only their label, so a long run looks hung; there it writes a plain line at a stage's first step,
    then at most every ``interval`` seconds, and at its last step, each flushed at once.

    Stages are not known in advance: a new stage starts whenever the stage name changes (or its step
    count goes back), so stages added to the search later need no change here.
    """

    def __init__(self, quiet: bool = False, *, stream: TextIO | None = None, interactive: bool | None = None,
                 interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.interactive = _is_terminal(self.stream) if interactive is None else interactive
        self.interval = interval
        self.clock = clock
        self.stage: str | None = None
        self.bar = None  # the current stage's click progress bar, on a terminal
        self._last_step = 0
        # Plain mode. The callback arrives only after a step has run, so the stage's clock starts at its
        # first report: starting it earlier would count the setup before the stage as step time.
        self._first_step = 0
        self._first_time = 0.0
        self._last_print: float | None = None

    def __call__(self, info: StepInfo) -> None:
        if self.quiet:
            return
        if info.stage != self.stage or info.step <= self._last_step:
            self._start_stage(info)
        advanced = info.step - self._last_step
        self._last_step = info.step
        if self.interactive:
            self.bar.update(advanced, info)
        else:
            self._plain(info)

    def _start_stage(self, info: StepInfo) -> None:
        self.close()
        self.stage = info.stage
        self._last_step = 0
        if self.interactive:
            self.bar = click.progressbar(length=info.total, label=info.stage.ljust(_LABEL_WIDTH), file=self.stream,
                                         show_pos=True, item_show_func=self._describe)
            self.bar.__enter__()
        else:
            self._first_step = info.step
            self._first_time = self.clock()
            self._last_print = None

    def _plain(self, info: StepInfo) -> None:
        now = self.clock()
        due = self._last_print is None or info.step >= info.total or now - self._last_print >= self.interval
        if not due:
            return
        self._last_print = now
        self.stream.write(self.line(info, now) + "\n")
        self.stream.flush()

    def line(self, info: StepInfo, now: float | None = None) -> str:
        """The plain progress line for ``info`` at clock reading ``now`` (default: the clock now)."""
        now = self.clock() if now is None else now
        elapsed = now - self._first_time
        done = info.step - self._first_step
        if info.step >= info.total:
            eta = format_duration(0)
        elif done > 0:
            eta = format_duration(elapsed / done * (info.total - info.step))
        else:
            eta = "?"  # one report is no step time yet
        percent = info.step / info.total if info.total else 1.0
        tau = f"  tau {info.tau:.3g}" if info.tau is not None else ""
        loss = f"  loss {info.loss:.4g}" if info.loss is not None else ""
        return (f"{info.stage:<{_LABEL_WIDTH}} step {info.step}/{info.total} ({percent:.0%}){loss}"
                f"{tau}  sparsity {info.sparsity:.1%}  elapsed {format_duration(elapsed)}  eta {eta}")

    @staticmethod
    def _describe(info: StepInfo | None) -> str:
        if info is None:
            return ""
        tau = f" tau {info.tau:.3g}" if info.tau is not None else ""
        loss = f"loss {info.loss:.4g} " if info.loss is not None else ""
        return f"{loss}{tau.lstrip()}{' ' if tau else ''}sparsity {info.sparsity:.1%}"

    def close(self) -> None:
        """Finish the current bar, so that what follows starts on a fresh line."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
