"""The ``smart-onnx`` command group: turns library errors into one-line messages."""

from __future__ import annotations

import logging
import sys

import click

import smart_onnx
from smart_onnx.errors import SmartOnnxError


class UserError(click.ClickException):
    """A SmartOnnxError shown as ``Error: <one line>`` with exit code 2."""

    exit_code = 2


class SmartOnnxGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The exact command line goes into reports; sys.argv is wrong when called as a library (CliRunner).
        ctx.meta["smart_onnx.argv"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SmartOnnxError as e:
            raise UserError(" ".join(str(e).split())) from e
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


def _register_commands() -> None:
    from smart_onnx.cli import check_cmd, eval_cmd, inspect_cmd, prune_cmd, targets_cmd

    cli.add_command(inspect_cmd.inspect)
    cli.add_command(check_cmd.check)
    cli.add_command(targets_cmd.targets)
    cli.add_command(prune_cmd.prune_cmd, name="prune")
    cli.add_command(eval_cmd.eval_cmd, name="eval")


_register_commands()


def main() -> None:
    cli(prog_name="smart-onnx")


if __name__ == "__main__":
    main()
