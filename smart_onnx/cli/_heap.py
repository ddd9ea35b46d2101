"""Keep glibc from holding freed tensor memory for the rest of a ``prune`` run.

glibc serves a large allocation with its own mmap only while it is above a threshold, and
raises that threshold to the size of every such block freed (up to 32 MiB). After the first
training step nearly every activation tensor comes from the heap, where freed blocks
interleave with live ones and cannot go back to the system: on a CRNN recognizer 230-340 MiB
of the peak was freed memory glibc kept. A fixed threshold stops the raise, but alone it
made the search 30-45% slower (every large tensor faulted in page by page); backed by
transparent huge pages (glibc's ``hugetlb`` tunable) it costs 7-8%. Both are glibc
*tunables*, read only when a process starts, so ``prune`` re-executes itself once with them
set. Measured in docs/benchmarks.md ("Peak memory of prune").
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["HEAP_TUNABLES", "restart_with_heap_tunables"]

log = logging.getLogger(__name__)

# Blocks of 4 MiB and more are mapped on their own, with huge pages, and unmapped when freed.
HEAP_TUNABLES = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304"
_MIN_GLIBC = (2, 35)  # the first glibc with the hugetlb tunable; older ones would only get the slow half


def _glibc_version() -> tuple[int, ...] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    return tuple(int(p) for p in version.split(".")[:2]) if name == "glibc" else None


def restart_with_heap_tunables(argv: Sequence[str] | None = None) -> None:
    """Re-execute this process with :data:`HEAP_TUNABLES` (same interpreter, same arguments); returns only
    where that does not apply: not glibc >= 2.35, ``GLIBC_TUNABLES`` already set (also by the user, to
    opt out: ``GLIBC_TUNABLES=``), or no original command line to repeat.
    """
    version = _glibc_version()
    argv = list(sys.orig_argv if argv is None else argv)
    if version is None or version < _MIN_GLIBC or "GLIBC_TUNABLES" in os.environ or len(argv) < 2:
        return
    log.debug("restarting with GLIBC_TUNABLES=%s", HEAP_TUNABLES)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], {**os.environ, "GLIBC_TUNABLES": HEAP_TUNABLES})
