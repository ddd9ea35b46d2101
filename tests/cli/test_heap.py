"""prune's restart with glibc heap tunables (smart_onnx/cli/_heap.py), in a real child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from smart_onnx.cli import _heap

PRINT_TUNABLES = "import os, sys; print(os.environ.get('GLIBC_TUNABLES', '-'), sys.argv[1:])"


def _run(env: dict[str, str]) -> str:
    # The child restarts itself through restart_with_heap_tunables and prints what the restarted one sees.
    code = ("import sys\nif sys.argv[1:] == ['first']:\n"
            "    from smart_onnx.cli._heap import restart_with_heap_tunables\n"
            f"    restart_with_heap_tunables([*sys.orig_argv[:-1], 'again'])\n{PRINT_TUNABLES}")
    return subprocess.run([sys.executable, "-c", code, "first"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif((_heap._glibc_version() or (0,)) < _heap._MIN_GLIBC, reason="needs glibc >= 2.35")
def test_restarts_once_with_the_tunables() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert _run(env) == f"{_heap.HEAP_TUNABLES} ['again']"


def test_tunables_the_user_set_are_kept() -> None:
    env = {**os.environ, "GLIBC_TUNABLES": ""}  # empty: the user's way to opt out
    assert _run(env) == "['first']"  # no restart: the empty value printed before the arguments
