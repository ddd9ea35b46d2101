"""Option sets shared by several commands, as click decorators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from smart_onnx.errors import DataError
from smart_onnx.model import OnnxModel


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
