"""Option sets shared by several commands, as click decorators."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from smart_onnx.errors import DataError, ModelLoadError
from smart_onnx.model import OnnxModel


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"0.485,0.456,0.406"`` -> a tuple of floats (None stays None); ``what`` names the option in the error."""
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DataError(f"--{what} {text!r} must be comma-separated numbers, e.g. 0.485,0.456,0.406") from None


def parse_input_shapes(values: tuple[str, ...], model: OnnxModel) -> dict[str, tuple[int, ...]] | None:
    """``name:1x3x224x224`` strings -> {name: shape}; a bare ``1x3x224x224`` names a single-input model's input.

    Returns None when no shape was given.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for text in values:
        name, _, dims = text.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            raise DataError(f"--input-shape {text!r} is not NAME:DxDxD (e.g. images:1x3x224x224)") from None
        if any(d <= 0 for d in shape):
            raise DataError(f"--input-shape {text!r} has a non-positive dimension")
        if not name:
            if len(model.inputs) != 1:
                names = [i.name for i in model.inputs]
                raise DataError(f"--input-shape {text!r} needs NAME: the model has inputs {names}")
            name = model.inputs[0].name
        shapes[name] = shape
    return shapes or None


def input_shape_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="NAME:1x3xHxW",
        help="Concrete shape for an input with symbolic dims (repeatable); NAME may be omitted for one input.",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")(func)


def model_argument(name: str = "model") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # exists=False: the library's loader gives the one-line message for missing files and directories.
    return click.argument(name, type=click.Path(dir_okay=True, path_type=str))


def check_writable(path: Path, source: Path | str, what: str) -> None:
    """Refuse an output path before any long work: missing or read-only directory, a file as directory, the input."""
    if path.resolve() == Path(source).resolve():
        raise ModelLoadError(
            f"{what} {str(path)!r} is the input model; choose another path (the input is never modified)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise ModelLoadError(f"cannot write {what} {str(path)!r}: {str(parent)!r} is not a directory")
    if not parent.is_dir():
        raise ModelLoadError(f"cannot write {what} {str(path)!r}: directory {str(parent)!r} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"cannot write {what} {str(path)!r}: it is a directory")
    # A real probe: os.access says yes to root, and to /proc, where nothing can be created.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
    except OSError as e:
        raise ModelLoadError(f"cannot write {what} {str(path)!r}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)
