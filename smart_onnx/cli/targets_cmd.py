"""``smart-onnx targets``: the built-in hardware profiles."""

from __future__ import annotations

import json

import click

from smart_onnx.cli.options import json_option
from smart_onnx.cli.table import format_table
from smart_onnx.hw import DEFAULT_PROFILE, list_profiles


@click.command()
@json_option
def targets(as_json: bool) -> None:
    """List the built-in hardware profiles (use one with --target NAME)."""
    profiles = list_profiles()
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in profiles], indent=2))
        return
    rows = [[p.name + (" (default)" if p.name == DEFAULT_PROFILE else ""), p.mode, ", ".join(p.modes),
             p.description] for p in profiles]
    click.echo(format_table(["name", "mode", "modes", "description"], rows, title="Built-in targets"))
    click.echo("\nWhere each rule comes from: docs/profiles.md; per layer of a model: "
               "smart-onnx check MODEL --target NAME --explain.\n"
               "A profile file of your own: --target path/to/profile.toml (format: docs/profiles.md).")
