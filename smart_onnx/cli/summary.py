"""The closing table of ``prune``: what shrank, what it cost, how faithful every output stayed."""

from __future__ import annotations

from pathlib import Path

from smart_onnx._format import percent
from smart_onnx.cli.table import format_table, human
from smart_onnx.eval.fidelity import output_table, verdict_lines
from smart_onnx.report import PruneReport


def render_summary(report: PruneReport, output: Path | str, report_path: Path | str) -> str:
    totals, sp = report.totals, report.sparsity
    rows = [
        ["prunable weights", f"{totals.params_before:,}", f"{totals.params_after:,}", f"x{totals.params_ratio:.3f}"],
        ["prunable MACs", human(totals.macs_before), human(totals.macs_after), f"x{totals.macs_ratio:.3f}"],
        # Of all prunable weights, as the line above counts them: the two lines always agree.
        ["sparsity (weights)", "", percent(1.0 - totals.params_ratio), f"requested {percent(sp.requested)}"],
        ["sparsity (MACs)", "", percent(1.0 - totals.macs_ratio), ""],
    ]
    if sp.searched is not None:  # frozen groups or layers outside the target hold the rest
        what = "MACs" if sp.budget == "macs" else "weights"
        rows.append(["sparsity (searched units)", "", percent(sp.searched),
                     f"of the {what} the searched units hold (the rest cannot be pruned in this mode)"])
    ev = report.eval
    if ev:
        for batch, lat in ev.latency.items():
            ref, cand = lat["reference"].median_ms, lat["candidate"].median_ms
            rows.append([f"latency batch {batch}", f"{ref:.2f} ms", f"{cand:.2f} ms", f"x{cand / ref:.2f}"])
    if report.check is not None:
        rows.append(["profile check", report.target or "", "pass" if report.check.passed else "FAIL",
                     f"rules: {', '.join(report.check.rules)}"])
    seconds = report.seconds
    rows.append(["time", "", f"{seconds.total:.0f} s", ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())])
    parts = [format_table(["", "dense", "pruned", ""], rows)]
    fidelity = report.fidelity
    if ev:
        header, out_rows = output_table(ev.outputs, fidelity.degraded if fidelity else ())
        parts.append(format_table(header, out_rows, title=f"Fidelity to the dense model ({ev.samples} held-out "
                                                          f"samples)"))
    verdict = verdict_lines(fidelity)
    if caveat := report.caveat():
        verdict.append(caveat)
    if remedies := report.remedies():
        verdict += ["what may help:", *(f"  - {r}" for r in remedies)]
    parts.append("\n".join(verdict))
    parts.append(f"wrote {output}\nwrote {report_path}")
    return "\n\n".join(parts)
