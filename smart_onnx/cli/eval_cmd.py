"""``smart-onnx eval``: a candidate model against its reference in onnxruntime; optionally a gate."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from smart_onnx.cli.options import check_writable, json_option, model_argument
from smart_onnx.cli.table import format_table, human
from smart_onnx.data import load_dataset
from smart_onnx.eval import (
    EVAL_BATCH_SIZE,
    EVAL_LATENCY,
    MACS_NOTE,
    LatencySettings,
    agreement_gate,
    check_same_inputs,
    compare_models,
    judge_fidelity,
)
from smart_onnx.eval.fidelity import output_table, verdict_lines
from smart_onnx.eval.html import write_html
from smart_onnx.graph import infer_output_roles, parse_role_overrides
from smart_onnx.graph import label_output as pick_label_output
from smart_onnx.model import load_model
from smart_onnx.report import AgreementGate, EvalResult


def _ratio(a: float, b: float) -> str:
    return f"x{b / a:.3f}" if a else "-"


def render_eval(result: EvalResult) -> str:
    """The people-facing tables of ``smart-onnx eval``."""
    ev, w, t = result.eval, result.comparison.weights, result.totals
    rows = [
        *([f"float weights ({what})", f"{ref:,}", f"{cand:,}", _ratio(ref, cand)]
          for what, ref, cand in (("nonzero", w.reference.nonzero, w.candidate.nonzero),
                                  ("total", w.reference.total, w.candidate.total))),
        ["prunable MACs (effective)", human(t.macs_before), human(t.macs_after), f"x{t.macs_ratio:.3f}"],
    ]
    for batch, lat in ev.latency.items():
        ref, cand = lat["reference"].median_ms, lat["candidate"].median_ms
        rows.append([f"median latency, batch {batch}", f"{ref:.3f} ms", f"{cand:.3f} ms", _ratio(ref, cand)])
    size = format_table(["", "reference", "candidate", "ratio"], rows)
    outputs = format_table(*output_table(ev.outputs, result.fidelity.degraded))
    notes = [f"{ev.samples} samples; {MACS_NOTE}."]
    s = result.comparison.latency
    if s.batches:
        notes.append(f"Latency: median of {s.repeats} runs after {s.warmup} warm-up runs, threads: {s.threads_shown}.")
    return "\n\n".join([size, outputs, "\n".join(notes), "\n".join(verdict_lines(result.fidelity))])


@click.command("eval")
@model_argument("reference")
@model_argument("candidate")
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Evaluation data (folder or file of .npz / .npy / images) for the reference's inputs.")
@json_option
@click.option("--min-agreement", type=click.FloatRange(0.0, 1.0), default=None,
              help="Gate: exit 1 when top-1 agreement is below this fraction (e.g. 0.98).")
@click.option("--min-fidelity", type=click.FloatRange(0.0, 1.0), default=None,
              help="Gate: exit 1 when any output's fidelity (agreement for class outputs, decode agreement for "
                   "sequences, mean cosine otherwise) is below this.")
@click.option("--output-role", "output_roles", multiple=True, metavar="NAME=ROLE",
              help="Role of a graph output: class, sequence, regression or ignore (repeatable).")
@click.option("--label-output", default=None, metavar="NAME",
              help="The class output the data's labels belong to [default: the single class output].")
@click.option("--batch-size", type=click.IntRange(1), default=EVAL_BATCH_SIZE, show_default=True,
              help="Evaluation batch size.")
@click.option("--latency-batch", type=click.IntRange(1), default=None,
              help="Second latency batch size besides 1 (default: --batch-size).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="onnxruntime intra-op threads (default: onnxruntime's choice).")
@click.option("--repeats", type=click.IntRange(1), default=EVAL_LATENCY.repeats, show_default=True,
              help="Timed runs per latency.")
@click.option("--warmup", type=click.IntRange(0), default=EVAL_LATENCY.warmup, show_default=True,
              help="Untimed runs before timing.")
@click.option("--no-latency", is_flag=True, help="Skip the latency measurement.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Also write a self-contained HTML report here.")
def eval_cmd(reference: str, candidate: str, data_path: Path, as_json: bool, min_agreement: float | None,
             batch_size: int, latency_batch: int | None, threads: int | None, repeats: int, warmup: int,
             no_latency: bool, html_path: Path | None, min_fidelity: float | None = None,
             output_roles: tuple[str, ...] = (), label_output: str | None = None) -> None:
    """Compare CANDIDATE (e.g. a pruned model) with REFERENCE on --data in onnxruntime."""
    if html_path is not None:  # before the evaluation, so a typo in the path does not cost the run
        check_writable(html_path, reference, "HTML report")
    ref_model, cand_model = load_model(reference), load_model(candidate)
    check_same_inputs(ref_model, cand_model)
    outputs = infer_output_roles(ref_model, parse_role_overrides(output_roles))
    data = load_dataset(data_path, ref_model.inputs)
    labelled = pick_label_output(outputs, label_output, data.labels is not None)
    latency = LatencySettings(() if no_latency else (1, latency_batch or batch_size), threads, warmup, repeats)
    comparison = compare_models(ref_model, cand_model, data, batch_size=batch_size, latency=latency, outputs=outputs,
                                label_output=labelled)
    verdict = judge_fidelity(comparison.eval.outputs, min_fidelity)
    # The gate is checked before anything is written, so a bad --min-agreement input costs nothing.
    gate = agreement_gate(comparison.eval, min_agreement) if min_agreement is not None else None
    command = shlex.join(["smart-onnx", *click.get_current_context().meta["smart_onnx.argv"]])
    result = EvalResult(reference, candidate, str(data_path), command, comparison, list(outputs), verdict,
                        None if gate is None else AgreementGate(min_agreement, gate[1], gate[0]))
    if html_path is not None:
        write_html(result, html_path, title=f"smart-onnx eval: {Path(candidate).name} vs {Path(reference).name}")
    click.echo(result.to_json().rstrip("\n") if as_json else render_eval(result))
    if html_path is not None and not as_json:
        click.echo(f"wrote {html_path}")
    failed = False
    if gate is not None and not gate[0]:
        click.echo(f"FAIL: top-1 agreement {gate[1]:.4f} is below --min-agreement {min_agreement}", err=True)
        failed = True
    if not verdict.passed:
        click.echo(f"FAIL: output {verdict.worst!r} fidelity {verdict.worst_fidelity:.4f} is below --min-fidelity "
                   f"{min_fidelity}", err=True)
        failed = True
    if failed:
        sys.exit(1)
