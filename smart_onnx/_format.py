"""How numbers and values read in tables, shared by the terminal output and the HTML report."""

from __future__ import annotations

__all__ = ["format_value", "percent"]


def format_value(value: object) -> str:
    """None -> '-', bools yes/no, floats to 4 significant digits, ints with separators, shapes as 1x3x8."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return str(value)


def percent(x: float | None) -> str:
    """0.1234 -> '12.34%'; None -> '-'."""
    return "-" if x is None else f"{100 * x:.2f}%"
