"""Atomic file output: what smart-onnx writes appears whole or not at all; and JSON objects read back into records."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from smart_onnx.errors import ModelLoadError

__all__ = ["Record", "StageSeconds", "atomic_output", "from_fields", "json_text", "write_json"]

T = TypeVar("T")
S = TypeVar("S", bound="StageSeconds")
R = TypeVar("R", bound="Record")


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
    text = json_text(report)
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return out


def json_text(value: Any) -> str:
    """Indented JSON of ``value``, ending in a newline; numpy scalars and arrays and paths become plain JSON."""
    return json.dumps(value, indent=2, default=_json_default) + "\n"


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def from_fields(cls: type[T], data: Mapping[str, Any], **override: Any) -> T:
    """The dataclass ``cls`` from a JSON object written by its ``to_dict``.

    Keys that are not fields (derived values such as ``passed`` or ``fidelity``) are left
    out; ``override`` gives fields that need converting (nested records, tuples, enums).
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{**{k: v for k, v in data.items() if k in names}, **override})


@dataclasses.dataclass
class StageSeconds:
    """Wall time per stage of a job, in seconds: the shape of every report's ``seconds``.

    A subclass names its stages as ``float | None`` fields, in the order they run (None: the
    stage did not run). The JSON object holds the stages that ran, in that order.
    """

    def to_dict(self) -> dict[str, float]:
        return {f.name: value for f in dataclasses.fields(self) if (value := getattr(self, f.name)) is not None}

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, float]) -> S:
        return from_fields(cls, data)

    def items(self) -> list[tuple[str, float]]:
        """``(stage, seconds)`` of the stages that ran, in order."""
        return list(self.to_dict().items())

    @property
    def total(self) -> float:
        return float(sum(self.to_dict().values()))


class Record:
    """A dataclass whose JSON object is its fields, in order: ``to_dict`` and ``from_dict`` for it.

    ``omit_if_none`` names the fields added to the JSON later, or set only sometimes: left out
    while None, so a record without them writes what it always wrote.
    """

    omit_if_none: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self.omit_if_none:
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        return from_fields(cls, data)
