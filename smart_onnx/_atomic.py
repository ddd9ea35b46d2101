"""Atomic file output: what smart-onnx writes appears whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smart_onnx.errors import ModelLoadError

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success, remove it on any failure.

    The temp file is in the destination directory (so the rename is atomic) and gets
    mode 0644: mkstemp's 0600 would make a model or report unreadable to other users.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise ModelLoadError(f"cannot write {str(out)!r}: {e.strerror or e}") from e
    try:
        os.fchmod(fd, 0o644)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
