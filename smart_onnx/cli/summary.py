"""The closing table of ``prune``: what shrank, what it cost, where it went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smart_onnx._format import percent
from smart_onnx.cli.table import format_table, human


def render_summary(report: dict[str, Any], output: Path | str, report_path: Path | str) -> str:
    totals, sp = report["totals"], report["sparsity"]
    rows = [
        ["prunable weights", f"{totals['params_before']:,}", f"{totals['params_after']:,}",
         f"x{totals['params_ratio']:.3f}"],
        ["prunable MACs", human(totals["macs_before"]), human(totals["macs_after"]), f"x{totals['macs_ratio']:.3f}"],
        ["sparsity (weights)", "", percent(sp["achieved_params"]), f"requested {percent(sp['requested'])}"],
        ["sparsity (MACs)", "", percent(sp["achieved_macs"]), ""],
    ]
    ev = report.get("eval")
    if ev:
        outs = ev["outputs"]
        agreement = next((o["top1_agreement"] for o in outs if o.get("top1_agreement") is not None), None)
        acc = next((o for o in outs if o.get("accuracy") is not None), None)
        if agreement is not None:
            rows.append(["top-1 agreement", "", percent(agreement), f"{ev['samples']} held-out samples"])
        if acc:
            rows.append(["accuracy", percent(acc["reference_accuracy"]), percent(acc["accuracy"]), ""])
        cos = min(o["cosine"] for o in outs)
        rows.append(["output cosine (min)", "", f"{cos:.5f}", ""])
        for batch, lat in ev.get("latency", {}).items():
            ref, cand = lat["reference"]["median_ms"], lat["candidate"]["median_ms"]
            rows.append([f"latency batch {batch}", f"{ref:.2f} ms", f"{cand:.2f} ms", f"x{cand / ref:.2f}"])
    check = report.get("check")
    if check is not None:
        rows.append(["profile check", report.get("target", ""), "pass" if check.get("passed") else "FAIL", ""])
    seconds = report.get("seconds", {})
    rows.append(["time", "", f"{sum(seconds.values()):.0f} s", ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items())])
    table = format_table(["", "dense", "pruned", ""], rows)
    return f"{table}\n\nwrote {output}\nwrote {report_path}"
