"""Atomic file output: what smart-onnx writes appears whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from smart_onnx.errors import ModelLoadError

__all__ = ["atomic_output", "write_json"]


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


def write_json(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as indented JSON atomically; numpy scalars and arrays and paths become plain JSON."""
    out = Path(path)
    text = json.dumps(report, indent=2, default=_json_default) + "\n"
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
