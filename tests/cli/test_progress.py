"""Progress reporting of ``prune``: plain lines when stderr is not a terminal, so CI logs show a run is alive."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smart_onnx.cli.progress import ProgressReporter, format_duration
from smart_onnx.search import StepInfo
from tests.cli.test_inspect_prune import files  # noqa: F401  (the module-scoped tiny model + data fixture)

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """A monotonic clock the test moves by hand, so timing-dependent output is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _steps(stage: str, total: int, tau: float | None = 0.5) -> list[StepInfo]:
    return [StepInfo(stage, step, total, 0.25, tau, 0.5) for step in range(1, total + 1)]


def _run(reporter: ProgressReporter, infos: list[StepInfo], clock: FakeClock, dt: float = 1.0) -> None:
    for info in infos:
        clock.now += dt
        reporter(info)
    reporter.close()


def _plain(stream: io.StringIO, clock: FakeClock, **kwargs) -> ProgressReporter:
    return ProgressReporter(stream=stream, interactive=False, clock=clock, **kwargs)


def test_interval_zero_gives_a_line_per_step() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, interval=0), _steps("search", 5) + _steps("finetune", 3, tau=None), clock)
    lines = out.getvalue().splitlines()
    assert len(lines) == 8
    assert lines[0].startswith("search   step 1/5 (20%)  loss 0.25  tau 0.5  sparsity 50.0%  elapsed 0:00  eta ?")
    assert lines[4].startswith("search   step 5/5 (100%)") and lines[4].endswith("eta 0:00")
    assert lines[5].startswith("finetune step 1/3 (33%)")


def test_large_interval_gives_only_first_and_last_line_of_each_stage() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, interval=1000), _steps("search", 50) + _steps("finetune", 20, tau=None), clock)
    heads = [" ".join(line.split()[:3]) for line in out.getvalue().splitlines()]
    assert heads == ["search step 1/50", "search step 50/50", "finetune step 1/20", "finetune step 20/20"]


def test_lines_come_at_the_interval() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, interval=10), _steps("search", 30), clock, dt=3.0)
    steps = [line.split()[2] for line in out.getvalue().splitlines()]
    # First step at t=3; then whenever 10 s have passed since the last line (every 4th step of 3 s); then the last.
    assert steps == ["1/30", "5/30", "9/30", "13/30", "17/30", "21/30", "25/30", "29/30", "30/30"]


def test_a_new_stage_name_is_its_own_stage() -> None:
    """Stage names are not a closed list: a later "refit" stage gets its first and last lines too."""
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, interval=1000), _steps("search", 4) + _steps("refit", 3, tau=None), clock)
    heads = [" ".join(line.split()[:3]) for line in out.getvalue().splitlines()]
    assert heads == ["search step 1/4", "search step 4/4", "refit step 1/3", "refit step 3/3"]


def test_quiet_writes_nothing() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, quiet=True, interval=0), _steps("search", 5) + _steps("finetune", 3, tau=None), clock)
    assert out.getvalue() == ""


def test_tau_is_left_out_in_finetune() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(_plain(out, clock, interval=0), _steps("search", 2, tau=0.153) + _steps("finetune", 2, tau=None), clock)
    lines = out.getvalue().splitlines()
    assert all("tau 0.153" in line for line in lines[:2])
    assert all("tau" not in line for line in lines[2:])


def test_eta_is_the_stage_mean_step_time_times_the_steps_left() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = _plain(out, clock, interval=0)
    reporter(StepInfo("search", 1, 400, 0.04, 0.2, 0.3))
    clock.now += 41.0  # 119 steps in 41 s after the first report
    reporter(StepInfo("search", 120, 400, 0.0412, 0.153, 0.498))
    last = out.getvalue().splitlines()[-1]
    assert last == ("search   step 120/400 (30%)  loss 0.0412  tau 0.153  sparsity 49.8%  elapsed 0:41  "
                    f"eta {format_duration(41.0 / 119 * 280)}")
    assert last.endswith("eta 1:36")


@pytest.mark.parametrize("seconds,text", [(0, "0:00"), (0.4, "0:00"), (59.6, "1:00"), (95, "1:35"),
                                          (3599, "59:59"), (3600, "1:00:00"), (3 * 3600 + 61, "3:01:01"),
                                          (-5, "0:00")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_terminal_mode_draws_click_bars_and_no_plain_lines() -> None:
    out, clock = io.StringIO(), FakeClock()
    _run(ProgressReporter(stream=out, interactive=True, clock=clock, interval=0), _steps("search", 3), clock)
    assert "search  " in out.getvalue() and "step 1/3" not in out.getvalue()


def test_a_non_terminal_stream_is_detected() -> None:
    assert ProgressReporter(stream=io.StringIO()).interactive is False


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "quiet"])
def test_prune_to_a_file_writes_plain_progress_lines(files, tmp_path, quiet) -> None:  # noqa: F811
    """The real command with stderr in a file (as under CI or ``2> log``): progress lines, or none with -q."""
    log = tmp_path / "stderr.log"
    cmd = [sys.executable, "-m", "smart_onnx.cli.main", "prune", str(files / "m.onnx"), "--data",
           str(files / "calib.npz"), "--sparsity", "0.5", "--steps", "3", "--finetune-steps", "3",
           "--batch-size", "8", "--no-latency", "-o", str(tmp_path / "out.onnx"), *(["-q"] if quiet else [])]
    with log.open("w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    text = log.read_text()
    assert proc.returncode == 0, text
    progress = [line for line in text.splitlines() if " step " in line and " eta " in line]
    if quiet:
        assert progress == [], text
    else:
        heads = [" ".join(line.split()[:3]) for line in progress]
        assert heads == ["search step 1/3", "search step 3/3", "refit step 1/2", "refit step 2/2",
                         "finetune step 1/3", "finetune step 3/3"], text
        assert "\r" not in text and "\x1b" not in text  # no bar redrawing in a file
