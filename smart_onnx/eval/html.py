"""A self-contained HTML page for a prune report or an eval result (plots embedded as base64 PNG).

The input is ``prune``'s :class:`~smart_onnx.report.PruneReport` (sparsity, layers, history,
eval, optional check) or ``eval``'s :class:`~smart_onnx.report.EvalResult` (weights, layers,
eval, optional gate). Sections a report does not have are left out. The
page loads nothing from outside: no scripts, fonts or stylesheets.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from smart_onnx._atomic import atomic_output
from smart_onnx._format import format_value, percent
from smart_onnx.eval.compare import MACS_NOTE
from smart_onnx.eval.fidelity import output_table, verdict_lines

if TYPE_CHECKING:
    from smart_onnx.eval.compare import LayerRow
    from smart_onnx.eval.fidelity import FidelityVerdict
    from smart_onnx.eval.ort import EvalReport, LatencySettings
    from smart_onnx.hw import CheckReport
    from smart_onnx.report import EvalResult, PruneReport
    from smart_onnx.search import History

__all__ = ["render_html", "write_html"]

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#212121;margin:0;background:#f5f6f8}
main{max-width:1120px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e0e0e0;padding-bottom:4px}
pre{background:#263238;color:#eceff1;padding:8px 12px;border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eceff1;text-align:left;vertical-align:top}
th{background:#fafafa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
h3{font-size:14px;margin:16px 0 0;color:#424242}
img{max-width:100%;display:block;margin:8px 0}.pass{color:#2E7D32;font-weight:600}.fail{color:#C62828;font-weight:600}
.note{color:#616161;font-size:12px}
"""


# Cells that read as numbers (12.5%, x0.52, 1,024, 0.034) are right-aligned.
_NUMBER = re.compile(r"^x?-?[\d,]+(\.\d+)?(e-?\d+)?%?$")


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, _Raw):
                cells.append(f"<td>{v}</td>")
            else:
                numeric = (isinstance(v, (int, float)) and not isinstance(v, bool)) or bool(_NUMBER.match(str(v)))
                cells.append(f"<td{' class=n' if numeric else ''}>{_e(format_value(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Cell content that is already HTML."""


def _text(value: object) -> _Raw:
    """A cell that stays left-aligned text even when it looks like a number (an output named '66')."""
    return _Raw(_e(value))


def _verdict(passed: bool | None) -> _Raw:
    if passed is None:
        return _Raw("-")
    return _Raw('<span class="pass">pass</span>' if passed else '<span class="fail">FAIL</span>')


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _run(r: PruneReport | EvalResult) -> str:
    keys = ("reference", "candidate", "data", "output", "mode", "method", "budget", "block", "nm", "seed")
    rows = [[k, _text(format_value(getattr(r, k)))] for k in keys if getattr(r, k, None) is not None]
    return _table(["setting", "value"], rows) if rows else ""


def _summary(r: PruneReport | EvalResult, names: tuple[str, str]) -> str:
    rows: list[list[object]] = []
    sp = getattr(r, "sparsity", None)
    if sp:
        requested = percent(sp.requested)
        rows.append([f"sparsity of weights (requested {requested})", "", percent(sp.achieved_params), ""])
        rows.append(["sparsity of MACs", "", percent(sp.achieved_macs), ""])
    comparison = getattr(r, "comparison", None)  # eval's
    if comparison:
        w = comparison.weights
        for what, ref, cand in (("nonzero", w.reference.nonzero, w.candidate.nonzero),
                                ("total", w.reference.total, w.candidate.total)):
            rows.append([f"float weights ({what})", ref, cand, f"x{cand / ref:.3f}" if ref else "-"])
    t = r.totals
    if t:
        rows.append(["prunable-layer weights", t.params_before, t.params_after, f"x{t.params_ratio:.3f}"])
        rows.append(["prunable-layer MACs", t.macs_before, t.macs_after, f"x{t.macs_ratio:.3f}"])
    gate = getattr(r, "gate", None)
    if gate:
        rows.append(["top-1 agreement gate", f"min {percent(gate.min_agreement)}", percent(gate.agreement),
                     _verdict(gate.passed)])
    note = f'<p class="note">{_e(MACS_NOTE)}.</p>' if comparison else ""
    return "<h2>Summary</h2>" + _run(r) + _table(["", *names, "ratio"], rows) + note


def _eval(ev: EvalReport | None, fidelity: FidelityVerdict | None, settings: LatencySettings | None,
          candidate: str, remedies: list[str]) -> str:
    if not ev:
        return ""
    out = [f"<h2>Evaluation ({ev.samples} samples, onnxruntime)</h2>"]
    out.append(_table(*output_table(ev.outputs, fidelity.degraded if fidelity else ())))
    out.append("".join(f"<p><b>{_e(line)}</b></p>" for line in verdict_lines(fidelity)))
    if remedies:
        out.append("<p>What may help:</p><ul>" + "".join(f"<li>{_e(r)}</li>" for r in remedies) + "</ul>")
    if ev.latency:
        rows = []
        for batch, pair in ev.latency.items():
            ref, cand = pair["reference"], pair["candidate"]
            rows.append([int(batch), f"{ref.median_ms:.3f}", f"{cand.median_ms:.3f}",
                         f"x{cand.median_ms / ref.median_ms:.2f}" if ref.median_ms else "-",
                         ref.repeats, ref.threads])
        out.append(_table(["batch", "reference (ms)", f"{candidate} (ms)", "ratio", "repeats", "threads"], rows))
        if settings:
            out.append(f'<p class="note">Median of {_e(settings.repeats)} runs after {_e(settings.warmup)} '
                       f'warm-up runs; threads: {_e(settings.threads_shown)}.</p>')
    return "".join(out)


def _check(check: CheckReport | None, target: object) -> str:
    if not check:
        return ""
    title = f"Profile check: {_e(check.profile or target or '')} "
    rows = [[i, lay.name, lay.op_type, lay.pattern, percent(lay.sparsity), _verdict(lay.passed),
             "; ".join(v.message for v in lay.violations)]
            for i, lay in enumerate(check.layers)]
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in check.notes)
    return (f"<h2>{title}{_verdict(check.passed)}</h2>"
            + _table(["#", "layer", "op", "pattern", "sparsity", "verdict", "violations"], rows) + notes)


def _layers(layers: Sequence[LayerRow], overall: float | None) -> str:
    if not layers:
        return ""
    from smart_onnx.eval.plots import layer_size_plot, sparsity_plot  # matplotlib: only when a page is drawn

    with_before = any(r.sparsity_before for r in layers)
    headers = ["#", "layer", "op", "shape before", "shape after", "weights before", "weights after"]
    headers += ["sparsity before"] if with_before else []
    headers += ["sparsity", "MACs before", "MACs after"]
    rows = []
    for i, r in enumerate(layers):
        row = [i, r.name, r.op, format_value(r.shape_before), format_value(r.shape_after),
               r.params_before, r.params_after]
        row += [percent(r.sparsity_before)] if with_before else []
        rows.append(row + [percent(r.sparsity), r.macs_before, r.macs_after])
    return ("<h2>Layers</h2><h3>Sparsity per layer (graph order, colored by op type)</h3>"
            + _img(sparsity_plot(layers, overall), "per-layer sparsity")
            + "<h3>Weights and MACs per layer, before and after (log scale)</h3>"
            + _img(layer_size_plot(layers), "weights and MACs per layer") + _table(headers, rows))


def _history(history: History | None) -> str:
    from smart_onnx.eval.plots import history_plot

    png = history_plot(history) if history is not None else None
    return "<h2>Search and fine-tune</h2>" + _img(png, "loss and temperature curves") if png else ""


def _footer(r: PruneReport | EvalResult) -> str:
    out = []
    frozen = getattr(r, "frozen_groups", None)
    if frozen:
        out.append("<h2>Frozen channel groups</h2>" + _table(
            ["group", "layers", "channels", "reason"],
            [[g.id, ", ".join(g.layers), g.channels, g.reason] for g in frozen]))
    seconds = getattr(r, "seconds", None)
    if seconds is not None and seconds.items():
        out.append("<h2>Time</h2>" + _table(["stage", "seconds"], [[k, round(v, 2)] for k, v in seconds.items()]))
    return "".join(out)


def render_html(report: PruneReport | EvalResult, *, title: str = "smart-onnx report") -> str:
    """The whole page as one string (plots base64-embedded)."""
    sp = getattr(report, "sparsity", None)
    overall = sp.achieved_params if sp else None
    if overall is None and report.totals and report.totals.params_before:
        overall = 1.0 - report.totals.params_ratio
    # eval compares two given models; prune shows one model before and after.
    comparison = getattr(report, "comparison", None)
    names = ("reference", "candidate") if comparison is not None else ("before", "after")
    command = f"<pre>{_e(report.command)}</pre>" if report.command else ""
    body = "".join([
        f"<h1>{_e(title)}</h1>", command, _summary(report, names),
        _eval(report.eval, report.fidelity, comparison.latency if comparison else None,
              "candidate" if names[1] == "candidate" else "pruned",
              report.remedies() if hasattr(report, "remedies") else []),  # prune's report: what limited it
        _check(getattr(report, "check", None), getattr(report, "target", None)),
        _layers(report.layers, overall), _history(getattr(report, "history", None)), _footer(report),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body><main>{body}</main></body></html>\n")


def write_html(report: PruneReport | EvalResult, path: str | os.PathLike[str], *,
               title: str = "smart-onnx report") -> Path:
    """Render and write the page atomically (temp file in the same directory, then rename)."""
    out = Path(path)
    page = render_html(report, title=title)
    with atomic_output(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
