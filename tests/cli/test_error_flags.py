"""Library errors name parameters; the CLI shows them as its flags, and every flag an error names exists.

A test of issue 16: messages raised in data/ and search/ once named flags the CLI never had
(``--tau-start``, ``--image-size``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from smart_onnx.cli.main import FLAGS, cli, user_message
from smart_onnx.errors import ConstraintError, DataError, GraphError
from smart_onnx.model import normalize, resolve_input_shapes
from smart_onnx.search import SearchConfig

PACKAGE = Path(__file__).resolve().parents[2] / "smart_onnx"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _cli_flags() -> set[str]:
    """Every long option of the group and of each of its commands."""
    ctx = click.Context(cli)
    commands = [cli] + [cli.get_command(ctx, name) for name in cli.list_commands(ctx)]
    return {opt for command in commands for p in command.params for opt in (*p.opts, *p.secondary_opts)
            if opt.startswith("--")}


def _strings(node: ast.AST) -> list[str]:
    """The literal text of every string (f-string parts included) under ``node``."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _flags_in_errors() -> dict[str, list[str]]:
    """Flag -> the places (file:line) where an error message raised in smart_onnx names it."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for text in _strings(node.exc):
                    for flag in FLAG.findall(text):
                        found.setdefault(flag, []).append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_every_flag_an_error_names_is_a_cli_flag() -> None:
    flags = _cli_flags()
    assert "--input-shape" in flags and "--sparsity" in flags  # the collection itself works
    unknown = {flag: where for flag, where in _flags_in_errors().items() if flag not in flags}
    assert not unknown, f"error messages name flags the CLI does not define: {unknown}"


def test_library_errors_build_no_flag_names() -> None:
    """Outside cli/, a message may not make a flag out of a parameter name (``f"--{name}"``): that is how
    ``--tau-start``, which the CLI never had, reached users."""
    built = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for joined in (n for n in ast.walk(node.exc) if isinstance(n, ast.JoinedStr)):
                    parts = joined.values
                    for before, after in zip(parts, parts[1:]):
                        if (isinstance(before, ast.Constant) and isinstance(before.value, str)
                                and before.value.endswith("--") and isinstance(after, ast.FormattedValue)):
                            built.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not built, f"error messages that build a flag name at run time: {built}"


def test_every_mapped_flag_is_a_cli_flag() -> None:
    assert set(FLAGS.values()) <= _cli_flags()


def _symbolic_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    return normalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_library_error_names_the_parameter_not_a_flag() -> None:
    with pytest.raises(GraphError) as info:
        resolve_input_shapes(_symbolic_model())
    assert info.value.parameters == ("input_shapes",)
    assert "`input_shapes`" in str(info.value) and "--" not in str(info.value)


@pytest.mark.parametrize("error,shown", [
    (GraphError("`input_shapes` names 'z'", parameters=("input_shapes",)), "--input-shape names 'z'"),
    (DataError("`mean` and `std` apply to images", parameters=("mean", "std")), "--mean and --std apply to images"),
    (DataError("give the image size (`image_size`)", parameters=("image_size",)), "(`image_size`)"),  # no flag
    (DataError("a `std` value\n  on two lines"), "a `std` value on two lines"),  # not declared: left alone
    (ConstraintError("`tau_start` must be a positive number", parameters=("tau_start",)), "`tau_start` must"),
])
def test_cli_shows_parameters_as_flags(error, shown) -> None:
    assert user_message(error) == shown or shown in user_message(error)


def test_cli_error_names_the_flag(tmp_path: Path) -> None:
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(_symbolic_model().proto, path)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--input-shape", "z:1x3x8x8"])
    assert res.exit_code == 2
    assert "--input-shape names 'z'" in res.output and "`" not in res.output


def test_search_options_name_their_parameters() -> None:
    with pytest.raises(ConstraintError) as info:
        SearchConfig(tau_start=0.0)
    assert info.value.parameters == ("tau_start",) and "`tau_start` must be a positive number" in str(info.value)
    with pytest.raises(ConstraintError) as info:
        SearchConfig(lr=-1.0)
    assert user_message(info.value).startswith("--lr must be a positive number")
