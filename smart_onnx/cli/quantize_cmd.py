"""``smart-onnx quantize``: static INT8 (QDQ) quantization that keeps a pruned model's zeros, then verify it."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from smart_onnx._format import percent
from smart_onnx.cli.options import check_writable, model_argument, parse_floats
from smart_onnx.cli.table import format_table
from smart_onnx.data import EVAL_HOLDOUT, Dataset, load_dataset
from smart_onnx.eval import EVAL_LATENCY, LatencySettings
from smart_onnx.eval.fidelity import output_table, verdict_lines
from smart_onnx.graph import infer_output_roles, parse_role_overrides
from smart_onnx.hw import Profile, check_model, load_profile
from smart_onnx.model import OnnxModel, load_model, save_model
from smart_onnx.provenance import read_provenance
from smart_onnx.quant import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    QuantizeOptions,
    evaluate_quantized,
    quantize_model,
)
from smart_onnx.report import QuantizeCommandReport, QuantizeInfo

if TYPE_CHECKING:  # the quantize command itself needs no torch
    from smart_onnx.prune import PruneOutcome


def quantize_options(func: Any) -> Any:
    """The quantization settings ``quantize`` and ``prune --quantize`` share."""
    for option in reversed([
        click.option("--activations", type=click.Choice(ACTIVATION_TYPES), default=QuantizeOptions.activations,
                     show_default=True,
                     help="Activation type: uint8 (asymmetric, onnxruntime's CPU default and most NPU toolchains) "
                          "or int8 (symmetric, zero point 0, as TensorRT requires). Weights are always int8, "
                          "symmetric, per output channel."),
        click.option("--calibration", "calibration_method", type=click.Choice(CALIBRATION_METHODS),
                     default=QuantizeOptions.calibration, show_default=True,
                     help="How activation ranges are taken from the calibration data."),
        click.option("--calibration-samples", type=click.IntRange(1), default=None,
                     help="Calibration samples to use [default: all of --data]."),
    ]):
        func = option(func)
    return func


@click.command("quantize")
@model_argument()
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Calibration data (folder or file of .npz / .npy / images) for the activation ranges.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="INT8 model path (default: MODEL.int8.onnx beside MODEL).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="Report JSON path (default: beside the output, .json).")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Held-out data for the comparison (default: hold out part of --data).")
@click.option("--holdout", type=float, default=EVAL_HOLDOUT, show_default=True,
              help="Fraction of --data held out for the comparison when --eval-data is not given.")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=str), default=None, metavar="DENSE.onnx",
              help="The dense original of a pruned MODEL: the INT8 model is compared with it too, and check "
                   "accepts the zeros and channel counts it already had.")
@click.option("--target", default=None, metavar="NAME|PATH.toml",
              help="Check the INT8 model against this hardware profile [default: the one MODEL was pruned for].")
@quantize_options
@click.option("--mean", default=None, help="Image normalisation mean, comma-separated (images only).")
@click.option("--std", default=None, help="Image normalisation std, comma-separated (images only).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="onnxruntime threads for the comparison and latency [default: onnxruntime's choice].")
@click.option("--no-latency", is_flag=True, help="Skip the latency measurement.")
@click.option("--min-fidelity", type=click.FloatRange(0.0, 1.0), default=None,
              help="Gate: exit 1 when any output's fidelity to the float model (or the dense one) is below this; "
                   "the model and report are still written.")
@click.option("--output-role", "output_roles", multiple=True, metavar="NAME=ROLE",
              help="Role of a graph output: class, sequence, regression or ignore (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def quantize_cmd(model: str, data_path: Path, output: Path | None, report_path: Path | None, eval_data: Path | None,
                 holdout: float, reference: str | None, target: str | None, activations: str,
                 calibration_method: str, calibration_samples: int | None, mean: str | None, std: str | None,
                 threads: int | None, no_latency: bool, min_fidelity: float | None, output_roles: tuple[str, ...],
                 quiet: bool) -> None:
    """Quantize MODEL to INT8 (QDQ) on calibration data, keeping every pruned zero; compare in onnxruntime."""
    source = Path(model)
    output = output or source.with_name(source.stem + ".int8.onnx")
    report_path = report_path or output.with_suffix(".json")
    check_writable(output, source, "output model")
    check_writable(report_path, source, "report")
    float_model = load_model(model)
    dense = load_model(reference) if reference else None
    specs = float_model.inputs
    mean_v, std_v = parse_floats(mean, "mean"), parse_floats(std, "std")
    data = load_dataset(data_path, specs, mean=mean_v, std=std_v)
    if eval_data is not None:
        calib, held_out = data, load_dataset(eval_data, specs, mean=mean_v, std=std_v)
    else:
        calib, held_out = data.split(holdout, seed=0)
    profile_name = target or read_provenance(float_model.proto).get("smart_onnx.target")
    profile = load_profile(profile_name) if profile_name and profile_name != "none" else None
    options = QuantizeOptions(activations=activations, calibration=calibration_method, samples=calibration_samples,
                              target=profile.name if profile else None)
    if not quiet:
        click.echo(f"{model}: calibrating on {min(len(calib), calibration_samples or len(calib))} samples, "
                   f"comparing on {len(held_out)}", err=True)
    outcome = quantize_model(float_model, calib, options, original=dense)
    roles = infer_output_roles(float_model, parse_role_overrides(output_roles))
    info = outcome.info
    latency = LatencySettings(() if no_latency else EVAL_LATENCY.batches, threads)
    info.eval = evaluate_quantized(outcome.model, float_model, held_out, dense=dense, latency=latency, outputs=roles,
                                   min_fidelity=min_fidelity)
    if profile is not None:
        info.check = check_model(outcome.model, profile, reference=dense)
    report = QuantizeCommandReport(shlex.join(["smart-onnx", *click.get_current_context().meta["smart_onnx.argv"]]),
                                   model, str(output), info, read_provenance(outcome.model.proto))
    report.save(report_path)
    try:
        save_model(outcome.model, output)
    except BaseException:
        report_path.unlink(missing_ok=True)
        raise
    click.echo(render_quantize(info, output, report_path))
    if not info.eval.passed:
        click.echo(f"FAIL: an output's fidelity is below --min-fidelity {min_fidelity}", err=True)
        sys.exit(1)


def quantize_pruned(outcome: PruneOutcome, dense: OnnxModel, calibration: Dataset, held_out: Dataset | None,
                    options: QuantizeOptions, *, profile: Profile | None, latency: bool,
                    min_fidelity: float | None, output_roles: Mapping[str, str]) -> OnnxModel:
    """``prune --quantize int8``: quantize the pruned model, compare it with the float pruned and the dense model.

    Sets the report's ``quantize`` (settings, zeros, comparison, the check of the INT8 model)
    and INT8 provenance in ``outcome``'s report; returns the INT8 model.
    """
    result = quantize_model(outcome.model, calibration, options, original=dense)
    info = result.info
    if held_out is not None:
        roles = infer_output_roles(dense, output_roles)
        info.eval = evaluate_quantized(result.model, outcome.model, held_out, dense=dense, outputs=roles,
                                       label_output=outcome.report.label_output,
                                       latency=LatencySettings((1, outcome.report.search.batch_size) if latency
                                                               else ()),
                                       min_fidelity=min_fidelity)
    if profile is not None:  # by the rules the float model was judged by: its mode's
        rules = outcome.report.check.rules if outcome.report.check is not None else None
        info.check = check_model(result.model, profile, reference=dense, rules=rules)
    outcome.report.quantize = info
    outcome.report.provenance = read_provenance(result.model.proto)
    return result.model


def render_quantize(q: QuantizeInfo, output: Path | str | None = None, report_path: Path | str | None = None) -> str:
    """The closing tables of ``quantize`` (and of ``prune --quantize``)."""
    ev, z = q.eval, q.zeros
    sizes = ev.bytes
    rows = [["model bytes", *(f"{sizes[k]:,}" if k in sizes else "-" for k in ("dense", "float", "int8"))],
            ["prunable weights zero", "", f"{z.in_float:,}", f"{z.in_int8:,}"
             + (" (every float zero kept)" if z.kept else " (ZEROS LOST)")]]
    for batch, pair in ev.versus["float"].latency.items():
        lat = {"float": pair["reference"].median_ms, "int8": pair["candidate"].median_ms}
        if "dense" in ev.versus:
            lat["dense"] = ev.versus["dense"].latency[batch]["reference"].median_ms
        rows.append([f"latency batch {batch}", *(f"{lat[k]:.2f} ms" if k in lat else "-"
                                                 for k in ("dense", "float", "int8"))])
    if q.check is not None:
        rows.append(["profile check", "", "", f"{'pass' if q.check.passed else 'FAIL'} ({q.check.profile})"])
    parts = [format_table(["", "dense", "float", "int8"], rows,
                          title=f"INT8 (QDQ): weights {q.weights}; activations {q.activations}; "
                                f"{q.calibration.method} calibration on {q.calibration.samples} samples")]
    for key, label in (("float", "the float model"), ("dense", "the dense original")):
        if key not in ev.versus:
            continue
        verdict = ev.fidelity[key]
        header, out_rows = output_table(ev.versus[key].outputs, verdict.degraded)
        header = [h.replace("ref -> pruned", "ref -> int8") for h in header]
        parts.append(format_table(header, out_rows, title=f"INT8 vs {label} ({ev.samples} held-out samples)"))
        parts.append("\n".join(verdict_lines(verdict)))
    if z.restored:
        parts.append(f"{z.restored:,} small non-zero weights would have rounded to 0 and were kept at +-1 step "
                     f"({percent(z.restored / max(1, sum(lay.size for lay in q.layers)))} of the weights), so "
                     "the integer weights are zero exactly where the float weights are.")
    if output is not None:
        parts.append(f"wrote {output}\nwrote {report_path}")
    return "\n\n".join(parts)
