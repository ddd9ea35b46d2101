"""The ``smart-onnx`` command group: turns library errors into one-line messages.

Commands are imported when they run, not at start-up: ``--version``, ``targets``,
``check`` and ``inspect`` (what a compiler pipeline calls many times) import neither torch
nor matplotlib; only ``prune`` and ``eval`` pay for what they use.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

import smart_onnx
from smart_onnx.errors import SmartOnnxError

# name -> (module, attribute): imported on first use.
_COMMANDS = {
    "inspect": ("smart_onnx.cli.inspect_cmd", "inspect"),
    "check": ("smart_onnx.cli.check_cmd", "check"),
    "targets": ("smart_onnx.cli.targets_cmd", "targets"),
    "prune": ("smart_onnx.cli.prune_cmd", "prune_cmd"),
    "quantize": ("smart_onnx.cli.quantize_cmd", "quantize_cmd"),
    "eval": ("smart_onnx.cli.eval_cmd", "eval_cmd"),
}


# The library names the parameter at fault (SmartOnnxError.parameters, written `name` in the message);
# here, and only here, a parameter becomes the flag that sets it. A parameter with no flag keeps its name.
FLAGS = {
    "input_shapes": "--input-shape",
    "mean": "--mean",
    "std": "--std",
    "sparsity": "--sparsity",
    "lr": "--lr",
    "score_lr": "--score-lr",
    "distill_temperature": "--distill-temperature",
    "block": "--block",
    "nm": "--nm",
    "mode": "--mode",
    "target": "--target",
    "reference": "--reference",
    "output_roles": "--output-role",
    "label_output": "--label-output",
    "batch_size": "--batch-size",
}


def user_message(error: SmartOnnxError) -> str:
    """``str(error)`` on one line, each parameter it names (`name`) shown as the CLI flag that sets it."""
    message = " ".join(str(error).split())
    for parameter in getattr(error, "parameters", ()):
        if parameter in FLAGS:
            message = message.replace(f"`{parameter}`", FLAGS[parameter])
    return message


class UserError(click.ClickException):
    """A SmartOnnxError shown as ``Error: <one line>`` with exit code 2."""

    exit_code = 2


class SmartOnnxGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*_COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module, attribute = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            command.name = cmd_name
            return command
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The exact command line goes into reports; sys.argv is wrong when called as a library (CliRunner).
        ctx.meta["smart_onnx.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SmartOnnxError as e:
            raise UserError(user_message(e)) from e
        except KeyboardInterrupt:
            click.echo("Interrupted; nothing was written.", err=True)
            sys.exit(130)


@click.group(cls=SmartOnnxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(smart_onnx.__version__, prog_name="smart-onnx")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Compress an exported ONNX model for edge NPUs with the SMART pruner."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _command(args: list[str]) -> str | None:
    return next((a for a in args if not a.startswith("-")), None)  # the group's own options take no values


def main() -> None:
    if _command(sys.argv[1:]) == "prune":  # the long, memory-hungry one: see smart_onnx/cli/_heap.py
        from smart_onnx.cli._heap import restart_with_heap_tunables

        restart_with_heap_tunables()
    cli(prog_name="smart-onnx")


if __name__ == "__main__":
    main()
