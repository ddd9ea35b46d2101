"""The version written into every report's JSON, and what every report does with its JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from smart_onnx._atomic import json_text, write_json

__all__ = ["SCHEMA_VERSION", "JsonReport"]

# Raised when a key of a report's JSON changes meaning or goes away (adding a key keeps it).
SCHEMA_VERSION = 1

R = TypeVar("R", bound="JsonReport")


class JsonReport:
    """A report's JSON text and file, from its ``to_dict`` and ``from_dict`` (each report defines those two)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        raise NotImplementedError

    def to_json(self) -> str:
        return json_text(self.to_dict())

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically (temp file in the same directory, then rename)."""
        return write_json(self.to_dict(), path)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike[str]) -> R:
        return cls.from_json(Path(path).read_text())
