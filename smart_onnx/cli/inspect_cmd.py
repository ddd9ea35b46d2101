"""``smart-onnx inspect``: what is in a model and what can be pruned."""

from __future__ import annotations

import json

import click

from smart_onnx.cli.options import input_shape_option, json_option, model_argument, parse_input_shapes
from smart_onnx.cli.table import format_table, human
from smart_onnx.graph import PrunableLayer
from smart_onnx.inspection import ModelSummary, summarize
from smart_onnx.model import load_model


@click.command()
@model_argument()
@input_shape_option
@json_option
def inspect(model: str, input_shapes: tuple[str, ...], as_json: bool) -> None:
    """Show inputs, ops, weights, prunable layers and channel groups of MODEL."""
    onnx_model = load_model(model)
    summary = summarize(onnx_model, parse_input_shapes(input_shapes, onnx_model))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(render(summary))


def render(s: ModelSummary) -> str:
    opsets = ", ".join(f"{d} {v}" for d, v in s.opsets.items())
    parts = [
        f"Model      {s.path or '<in memory>'}",
        f"Producer   {s.producer or '-'}   IR {s.ir_version}   opsets: {opsets}",
        f"Weights    {s.total_weights:,} floating-point values",
        *_provenance(s.provenance),
        "",
        format_table(["input", "shape", "dtype"], [[i["name"], _shape(i["shape"]), i["dtype"]] for i in s.inputs]),
        "",
        format_table(["output", "shape", "dtype", "role", "why"],
                     [[o["name"], _shape(o["shape"]), o["dtype"], o["role"], o["why"]] for o in s.outputs]),
        "",
        "Ops: " + ", ".join(f"{op} {n}" for op, n in s.op_histogram.items()),
    ]
    if s.input_shapes:
        parts.append("MACs at " + ", ".join(f"{k}={_shape(v)}" for k, v in s.input_shapes.items()))
    a = s.analysis
    if a is not None:
        parts += ["", format_table(
            ["layer", "op", "weight", "layout", "shape", "params", "MACs"],
            [[lay.name, lay.op_type, lay.weight, _layout(lay), _shape(lay.weight_shape), lay.params,
              human(lay.macs) if s.shapes_known else "needs --input-shape"] for lay in a.layers],
            title=f"Prunable layers ({len(a.layers)})",
        )]
        if not s.shapes_known:
            parts += ["", "Channel groups: not analysed (needs --input-shape)"]
        else:
            parts += ["", format_table(
                ["group", "channels", "layers", "params", "MACs", "status"],
                [[g.id, g.channels, _members(g.layers), g.params, human(g.macs), g.frozen or "prunable"]
                 for g in a.groups],
                title=f"Channel groups ({sum(1 for g in a.groups if not g.frozen)} prunable, "
                      f"{sum(1 for g in a.groups if g.frozen)} frozen)",
            )]
    parts.append("")
    if s.unsupported:
        parts.append(f"Executor cannot run {len(s.unsupported)} node(s):")
        parts += [f"  {m}" for m in s.unsupported]
    else:
        parts.append("Executor: every op is supported.")
    parts += [f"Note: {n}" for n in s.notes]
    return "\n".join(parts)


def _provenance(p: dict[str, str]) -> list[str]:
    """One line on how smart-onnx made the model, when it did."""
    if not p:
        return []
    get = lambda key: p.get("smart_onnx." + key, "?")  # noqa: E731
    return [f"Made by    smart-onnx {get('version')}: mode {get('mode')}, sparsity {get('sparsity_achieved')} "
            f"(requested {get('sparsity_requested')}, of {get('sparsity_budget')}), target {get('target')}, "
            f"quantized {get('quantized')}, source sha256 {get('source_sha256')[:16]}..."]


def _layout(layer: PrunableLayer) -> str:
    text = f"out:{layer.out_axis} in:{layer.in_axis}"
    return text + (f" g={layer.groups}" if layer.groups > 1 else "")


def _shape(shape: object) -> str:
    # Exporters write symbolic dims as whole formulas (nudenet: 200+ characters); a table needs a name.
    dims = [str(d) if len(str(d)) <= 16 else "?" for d in shape]  # type: ignore[union-attr]
    return "x".join(dims) if dims else "scalar"


def _members(layers: tuple[str, ...] | list[str]) -> str:
    text = ", ".join(layers)
    return text if len(text) <= 60 else text[:57] + "..."
