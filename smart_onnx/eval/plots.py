"""Report figures, rendered with matplotlib's Agg backend to PNG bytes (no display, no files)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # headless: never pick a GUI backend from the environment

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

if TYPE_CHECKING:
    from smart_onnx.eval.compare import LayerRow
    from smart_onnx.search import History

__all__ = ["history_plot", "layer_size_plot", "sparsity_plot"]

# One stable color per op type, so the same op reads the same in every figure.
_OP_COLORS = {"Conv": "#4C72B0", "ConvTranspose": "#8172B3", "Gemm": "#DD8452", "MatMul": "#55A868"}
_FALLBACK = "#937860"
_BEFORE, _AFTER = "#B0BEC5", "#1565C0"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _width(n: int) -> float:
    return min(11.0, max(8.0, 0.25 * n + 3))


def sparsity_plot(layers: Sequence[LayerRow], overall: float | None = None) -> bytes:
    """Per-layer sparsity bars (x: layer index in graph order), colored by op type."""
    fig, ax = plt.subplots(figsize=(_width(len(layers)), 3.6))
    ops = [r.op for r in layers]
    ax.bar(range(len(layers)), [r.sparsity for r in layers], color=[_OP_COLORS.get(o, _FALLBACK) for o in ops],
           width=0.8)
    handles = [Patch(color=_OP_COLORS.get(op, _FALLBACK), label=op) for op in dict.fromkeys(ops)]
    if overall is not None:
        handles.append(ax.axhline(overall, color="#C62828", linestyle="--", linewidth=1,
                                  label=f"overall {overall:.1%}"))
    ax.set_ylim(0, 1)
    ax.set_xlabel("layer index")
    ax.set_ylabel("sparsity")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False, ncol=6)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def layer_size_plot(layers: Sequence[LayerRow]) -> bytes:
    """Weights and MACs per layer, before and after, as grouped bars on a log scale."""
    fig, axes = plt.subplots(2, 1, figsize=(_width(len(layers)), 5.6), sharex=True)
    x = range(len(layers))
    for ax, key, label in ((axes[0], "params", "weights"), (axes[1], "macs", "MACs")):
        before = [getattr(r, f"{key}_before") or 0 for r in layers]
        after = [getattr(r, f"{key}_after") or 0 for r in layers]
        ax.bar([i - 0.2 for i in x], before, width=0.4, color=_BEFORE, label="before")
        ax.bar([i + 0.2 for i in x], after, width=0.4, color=_AFTER, label="after")
        if any(before):
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False, ncol=2)
    axes[1].set_xlabel("layer index")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig)


def history_plot(history: History) -> bytes | None:
    """Search loss with temperature on a second axis; fine-tune loss beside it. None without curves."""
    loss, tau, tune = history.loss, history.tau, history.finetune_loss
    if not loss and not tune:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    if loss:
        left.plot(loss, color="#1565C0", label="loss")
        _log_if_positive(left, loss)
        left.set_ylabel("loss", color="#1565C0")
        if tau:
            twin = left.twinx()
            twin.plot(tau, color="#EF6C00", label="temperature")
            _log_if_positive(twin, tau)
            twin.set_ylabel("temperature τ", color="#EF6C00")
    left.set_title("Structural search")
    left.set_xlabel("step")
    if tune:
        right.plot(tune, color="#2E7D32")
        _log_if_positive(right, tune)
    right.set_title("Fine-tune loss")
    right.set_xlabel("step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig)


def _log_if_positive(ax: Any, values: Sequence[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
