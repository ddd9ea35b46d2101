"""``smart-onnx check``: does a model comply with a hardware profile, layer by layer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from smart_onnx.cli.options import input_shape_option, json_option, model_argument, parse_input_shapes
from smart_onnx.cli.table import format_table
from smart_onnx.hw import DEFAULT_PROFILE, CheckReport, LayerCheck, Profile, check_model, load_profile
from smart_onnx.model import load_model

_MESSAGE_WIDTH = 70


def target_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--target", "-t", default=DEFAULT_PROFILE, show_default=True, metavar="NAME|PATH.toml",
        help="Hardware profile: a built-in name (see `smart-onnx targets`) or a .toml file.",
    )(func)


@click.command()
@model_argument()
@target_option
@click.option("--reference", type=click.Path(dir_okay=False, path_type=str), default=None, metavar="ORIGINAL.onnx",
              help="The model before pruning: channel counts and zeros it already had are accepted.")
@input_shape_option
@click.option("--explain", is_flag=True,
              help="Per layer: does the target accelerate it, and why not (op, channels, precision, pattern)?")
@json_option
@click.pass_context
def check(ctx: click.Context, model: str, target: str, reference: str | None, input_shapes: tuple[str, ...],
          as_json: bool, explain: bool = False) -> None:
    """Check MODEL against a hardware profile; exit 0 when it complies, 1 when it does not."""
    profile = load_profile(target)
    onnx_model = load_model(model)
    ref = load_model(reference) if reference else None
    report = check_model(onnx_model, profile, reference=ref, input_shapes=parse_input_shapes(input_shapes, onnx_model))
    if as_json:
        click.echo(json.dumps({"model": model, **report.to_dict()}, indent=2))
    else:
        click.echo(render(report))
        if explain:
            click.echo("\n" + render_explain(report, profile))
    ctx.exit(0 if report.passed else 1)


def render_explain(report: CheckReport, profile: Profile) -> str:
    """``--explain``: per layer, whether the target runs it faster, and why (not)."""
    rows = [[lay.name, lay.op_type, lay.precision, lay.pattern, lay.accelerated[0], lay.accelerated[1]]
            for lay in report.layers]
    yes = sum(lay.accelerated[0] == "yes" for lay in report.layers)
    parts = [format_table(["layer", "op", "precision", "pattern", "accelerated", "why"], rows,
                          title=f"Does {profile.name} accelerate each layer? ({yes} of {len(report.layers)} yes)")]
    if profile.precisions:
        parts.append(f"{profile.name} accelerates {', '.join(profile.precisions)} weights.")
    if profile.references:
        parts.append("Rules from: " + "; ".join(profile.references))
    return "\n".join(parts)


def render(report: CheckReport) -> str:
    rows = [[lay.name, lay.op_type, "x".join(str(d) for d in lay.shape), f"{lay.sparsity:.1%}", lay.pattern,
             _status(lay), _first(lay) if lay.violations else ""]
            for lay in report.layers]
    parts = [format_table(["layer", "op", "shape", "sparsity", "pattern", "status", "first violation"], rows,
                          title=f"Check against {report.profile} ({len(report.layers)} prunable layers)")]
    violations = report.violations
    if violations:
        parts += ["", f"Violations ({len(violations)}):"] + [f"  [{v.rule}] {v.message}" for v in violations]
    unknown = report.not_judged
    if unknown:
        parts += ["", f"Not judged ({len(unknown)}): needs --input-shape"]
        parts += [f"  [{n.rule}] layer {n.layer!r}: {n.reason}" for n in unknown]
    parts += [""] + [f"Note: {n}" for n in report.notes]
    failed = sum(not lay.passed for lay in report.layers)
    rest = f" ({len(unknown)} rule(s) not judged: they need --input-shape)" if unknown else ""
    parts.append(f"PASS: the model complies with {report.profile}{rest}." if report.passed
                 else f"FAIL: {failed} of {len(report.layers)} layers break {report.profile}{rest}.")
    return "\n".join(parts)


def _status(layer: LayerCheck) -> str:
    if not layer.passed:
        return "FAIL"
    return "ok, " + ", ".join(n.rule for n in layer.not_judged) + " not judged" if layer.not_judged else "ok"


def _first(layer: LayerCheck) -> str:
    """The first violation without the layer's name (the row has it), cut to the column width."""
    v = layer.violations[0]
    text = f"[{v.rule}] " + v.message.removeprefix(f"layer {layer.name!r} ({layer.op_type}, weight {layer.weight!r}) ")
    return text if len(text) <= _MESSAGE_WIDTH else text[: _MESSAGE_WIDTH - 3] + "..."
