"""Peer comparison at equal weight reduction: smart-onnx vs onnxsim's pruning module and Torch-Pruning (issue 6).

    pip install --no-deps onnxsim==0.8.1 torch-pruning==1.6.1
    python -m tools.bench_peers --steps 20 --finetune-steps 20 --write

On each benchmark model, at 50 % of the prunable (Conv/Gemm) weights removed:

* smart-onnx ``smart`` and ``magnitude``, channel and block (16x8x1x1) mode, with fine-tuning (``steps`` search +
  ``finetune_steps``; magnitude gets the sum as fine-tune steps) and without (both step counts 0);
* onnxsim 0.8.1's ``onnxsim.pruning``: ``apply_structured_pruning`` (output channels, global L2; its sparsity
  bisected until it removes 50 % of the weights), ``apply_magnitude_pruning`` (global unstructured, 50 %) and its
  2:4 mode; data-free, no fine-tuning;
* Torch-Pruning 1.6.1: ``MagnitudePruner`` (global L2 channel pruning, the classifier's outputs kept, ratio bisected
  to 50 % of the weights) on a torch rebuild of the same network whose weights are loaded from the ONNX
  initializers (checked against onnxruntime), fine-tuned with the same step budget, optimiser, batch and
  distillation loss as smart-onnx, exported with the legacy exporter at opset 17.

Accuracy and top-1 agreement with the dense model on the eval set, nonzero prunable weights, MACs (each layer's
dense MACs x its weight density), onnxruntime latency at batch 1 and 32, and the default hardware profile's check.
The torch modules are rebuilt from the ONNX files: the Fashion ResNet's graph has its BatchNorms folded into the
convs, so its rebuild is ``SmallResNet`` with Identity for BatchNorm and biased convs; the MNIST CNN is a chain.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from devkit.thirdparty import export as export_module
from smart_onnx.data import Dataset
from smart_onnx.eval.compare import Totals, compare_layers, layer_totals
from smart_onnx.eval.ort import evaluate, make_session, measure_latency, run_model
from smart_onnx.graph import OutputInfo, infer_output_roles, label_output
from smart_onnx.model import copy_proto, normalize
from smart_onnx.search import SearchConfig
from smart_onnx.search.loss import distillation_loss
from tools import _bench_common as bench

HEADING = "## Peer comparison"
REDUCTION = 0.5


def _conv_params(node: onnx.NodeProto) -> dict:
    a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[:2] != pads[2:]:
        raise ValueError(f"asymmetric pads on {node.name}")
    return {"stride": tuple(a.get("strides", (1, 1))), "padding": tuple(pads[:2]), "groups": a.get("group", 1)}


def _resnet(proto: onnx.ModelProto) -> nn.Module:
    from tools.train_fashion_resnet import SmallResNet

    net = SmallResNet()
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    for c in convs:
        c.bias = nn.Parameter(torch.zeros(c.out_channels))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "Conv"]
    for conv, node in zip(convs, nodes, strict=True):
        conv.weight.data = torch.from_numpy(inits[node.input[1]].copy())
        conv.bias.data = torch.from_numpy(inits[node.input[2]].copy())
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    net.head.weight.data = torch.from_numpy(inits[gemm.input[1]].copy())
    net.head.bias.data = torch.from_numpy(inits[gemm.input[2]].copy())
    return net


def _chain(proto: onnx.ModelProto) -> nn.Module:
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    layers: list[nn.Module] = []
    for node in proto.graph.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]
            conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), **_conv_params(node))
            conv.weight.data, conv.bias.data = w, inits[node.input[2]]
            layers.append(conv)
        elif node.op_type == "Relu":
            layers.append(nn.ReLU())
        elif node.op_type == "MaxPool":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
            layers.append(nn.MaxPool2d(tuple(a["kernel_shape"]), tuple(a.get("strides", a["kernel_shape"]))))
        elif node.op_type in ("Reshape", "Flatten"):
            layers.append(nn.Flatten())
        elif node.op_type == "Gemm":
            w = inits[node.input[1]]
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.data, lin.bias.data = w, inits[node.input[2]]
            layers.append(lin)
    return nn.Sequential(*layers)


def rebuild(name: str, proto: onnx.ModelProto, check: Callable[[nn.Module], float]) -> nn.Module:
    """The torch module of benchmark model ``name``; ``check`` returns its max abs difference to onnxruntime."""
    net = (_resnet if name == "fashion" else _chain)(proto).eval()
    diff = check(net)
    if diff > 1e-3:
        raise RuntimeError(f"torch rebuild of {name} differs from onnxruntime by {diff:.2g}")
    return net


def _prunable_weights(net: nn.Module) -> int:
    return sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def torch_pruning_channels(net: nn.Module, example: torch.Tensor, reduction: float) -> tuple[nn.Module, float]:
    """Global L2-magnitude channel pruning with Torch-Pruning, its ratio bisected to remove ``reduction`` of the
    Conv/Linear weights (the classifier's outputs are kept). Returns the pruned copy and the achieved reduction."""
    import copy

    import torch_pruning as tp

    total = _prunable_weights(net)

    def attempt(ratio: float) -> tuple[nn.Module, float]:
        model = copy.deepcopy(net)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                           global_pruning=True, pruning_ratio=ratio, ignored_layers=[last])
        pruner.step()
        return model, 1.0 - _prunable_weights(model) / total

    return _bisect(attempt, reduction, 0.0, 0.95, 14)


def _bisect(attempt: Callable[[float], tuple[Any, float]], target: float, lo: float, hi: float,
            iters: int) -> tuple[Any, float]:
    """Bisect a peer's knob until the weight reduction it achieves is closest to ``target``."""
    best = attempt(lo)
    for _ in range(iters):
        if abs(best[1] - target) < 0.005:
            break
        mid = (lo + hi) / 2
        out, got = attempt(mid)
        if abs(got - target) < abs(best[1] - target):
            best = (out, got)
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return best


def finetune(student: nn.Module, teacher: nn.Module, dense: onnx.ModelProto, data: Dataset, steps: int, *,
             lr: float, batch: int, seed: int) -> None:
    """Adam on all weights with smart-onnx's loss: the library's ``distillation_loss`` by the role of ``dense``'s
    output (KL at the default temperature for class logits) + cross-entropy on the labels.

    The loop stays here: the library's fine-tune (``search.trainer.Trainer``) takes its teacher from the model it
    trains, while Torch-Pruning's student has other shapes than the dense teacher.
    """
    if steps == 0:
        return
    outputs, label = _roles(dense, data)
    name = outputs[0].name
    config = SearchConfig()
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(next(iter(data.arrays.values())))
    y = torch.from_numpy(data.labels).long() if data.labels is not None else None
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    teacher.eval()
    student.train()
    order, pos = torch.randperm(len(x), generator=gen), 0
    for _ in range(steps):
        if pos + batch > len(x):
            order, pos = torch.randperm(len(x), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        with torch.no_grad():
            t = {name: teacher(x[idx])}
        s = {name: student(x[idx])}
        loss = distillation_loss(s, t, outputs, labels=None if y is None else y[idx], label_output=label,
                                 label_weight=config.label_weight, temperature=config.distill_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    student.eval()


def _roles(dense: onnx.ModelProto, data: Dataset) -> tuple[list[OutputInfo], str | None]:
    """The dense model's output roles and the output ``data``'s labels belong to, as ``prune`` finds them."""
    outputs = infer_output_roles(normalize(copy_proto(dense)))
    return outputs, label_output(outputs, None, data.labels is not None)


def export(net: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> onnx.ModelProto:
    """Legacy export at opset 17 with a dynamic batch, like the bundled model, under the dense model's names."""
    proto = export_module(net, example, opset=17)
    renames = {proto.graph.input[0].name: input_name, proto.graph.output[0].name: output_name}
    for value in (*proto.graph.input, *proto.graph.output):
        value.name = renames.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    return proto


def onnxsim_structured(proto: onnx.ModelProto, reduction: float,
                       weights: Callable[[onnx.ModelProto], int]) -> tuple[onnx.ModelProto, float]:
    """``onnxsim.pruning.apply_structured_pruning`` (global L2), its sparsity bisected towards ``reduction``."""
    from onnxsim import pruning

    total = weights(proto)

    def attempt(s: float) -> tuple[onnx.ModelProto, float]:
        out = pruning.apply_structured_pruning(proto, sparsity=s, global_sparsity=True)
        return out, 1.0 - weights(out) / total

    return _bisect(attempt, reduction, reduction, 0.99, 10)


def onnxsim_magnitude(proto: onnx.ModelProto, sparsity: float, nm: tuple[int, int] | None = None) -> onnx.ModelProto:
    """``onnxsim.pruning.apply_magnitude_pruning``: global unstructured, or N:M when ``nm`` is given."""
    from onnxsim import pruning

    if nm:
        return pruning.apply_magnitude_pruning(proto, n=nm[0], m=nm[1])
    return pruning.apply_magnitude_pruning(proto, sparsity=sparsity, global_sparsity=True)


def ort_diff(proto: onnx.ModelProto, net: nn.Module, x: np.ndarray) -> float:
    sess = make_session(proto)
    got = next(iter(run_model(sess, {sess.get_inputs()[0].name: x}).values()))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def _totals(proto: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> Totals:
    """The library's own count of ``proto``'s prunable layers (``*_after``): nonzero weights, and MACs as each
    layer's dense MACs x its weight density (what ``smart-onnx eval`` reports)."""
    model = normalize(copy_proto(proto))
    return layer_totals(compare_layers(model, model, shapes))


def _profile_check(proto: onnx.ModelProto, dense: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> str:
    try:
        from smart_onnx.hw import check_model, load_profile
    except ImportError:
        return "n/a"
    try:
        report = check_model(normalize(onnx.ModelProto.FromString(proto.SerializeToString())), load_profile(None),
                             reference=normalize(onnx.ModelProto.FromString(dense.SerializeToString())),
                             input_shapes=shapes)
    except Exception as e:  # a peer's graph the checker cannot read is reported, not fatal
        return f"n/a ({type(e).__name__})"
    return "yes" if report.passed else "no"


def _row(bm: bench.BenchModel, dense: onnx.ModelProto, name: str, proto: onnx.ModelProto,
         achieved: float | None = None) -> dict:
    """One table row; ``achieved`` (the weight reduction) defaults to 1 - nonzero prunable weights / the dense's."""
    shapes = _shapes(bm)
    totals = _totals(proto, shapes)
    if achieved is None:
        achieved = 1 - totals.params_after / _totals(dense, shapes).params_after
    batches = [(b.inputs, b.labels) for b in bm.eval.batches(256)]
    outputs, label = _roles(dense, bm.eval)
    ev = evaluate(dense, proto, batches, outputs=outputs, label_output=label)
    x = next(iter(bm.eval.arrays.values()))
    lat = {b: _latency_ms(proto, x[:b]) for b in (1, 32)}
    sys.stderr.write(f"{bm.name} {name}: acc {ev.accuracy:.4f} reduction {achieved:.3f}\n")
    return {"method": name, "accuracy": ev.accuracy, "agreement": ev.top1_agreement, "dense": ev.reference_accuracy,
            "weights": totals.params_after, "reduction": achieved, "macs": totals.macs_after,
            "lat1": lat[1], "lat32": lat[32], "valid": _profile_check(proto, dense, shapes)}


def _shapes(bm: bench.BenchModel) -> dict[str, tuple[int, ...]]:
    return {k: (1, *v.shape[1:]) for k, v in bm.eval.arrays.items()}


def _latency_ms(proto: onnx.ModelProto, x: np.ndarray, repeats: int = 50) -> float:
    """Median of ``repeats`` single-thread onnxruntime runs after 5 warm-ups (the library's measurement)."""
    sess = make_session(proto, threads=1)
    return measure_latency(sess, {sess.get_inputs()[0].name: x}, warmup=5, repeats=repeats, threads=1).median_ms


def compare(bm: bench.BenchModel, steps: int, ft: int, seed: int) -> list[dict]:
    """Every peer row for one benchmark model."""
    name = bm.name
    dense = onnx.load(str(bm.path))
    shapes = _shapes(bm)
    rows = [_row(bm, dense, "dense", dense, 0.0)]
    for mode in ("channel", "block"):
        for method, budgets in (("smart", ((steps, ft), (0, 0))), ("magnitude", ((steps, ft), (0, 0)))):
            for s, f in budgets:
                run = bench.run_prune(bm, mode, REDUCTION, method, steps=s, finetune_steps=f, seed=seed)
                label = f"smart-onnx {method} {mode}" + (f" ({s}+{f} steps)" if s + f else " (no fine-tune)")
                rows.append(_row(bm, dense, label, run.model.proto))
    structured, got = onnxsim_structured(dense, REDUCTION, lambda p: _totals(p, shapes).params_after)
    rows.append(_row(bm, dense, "onnxsim structured (global L2 channels)", structured, got))
    rows.append(_row(bm, dense, "onnxsim magnitude (global unstructured)", onnxsim_magnitude(dense, REDUCTION)))
    rows.append(_row(bm, dense, "onnxsim magnitude 2:4", onnxsim_magnitude(dense, REDUCTION, (2, 4))))
    x = next(iter(bm.eval.arrays.values()))
    net = rebuild(name, dense, lambda n: ort_diff(dense, n, x[:64]))
    example = torch.from_numpy(x[:1])
    input_name, output_name = dense.graph.input[0].name, dense.graph.output[0].name
    for s in (steps + ft, 0):
        torch.manual_seed(seed)
        pruned, got = torch_pruning_channels(net, example, REDUCTION)
        finetune(pruned, net, dense, bm.calib, s, lr=1e-4, batch=32, seed=seed)
        proto = export(pruned, example, input_name, output_name)
        label = "Torch-Pruning global magnitude channels" + (f" ({s} steps)" if s else " (no fine-tune)")
        rows.append(_row(bm, dense, label, proto))
    return rows


def table(rows: list[dict]) -> str:
    header = ["method", "weights removed", "accuracy %", "top-1 agreement %", "nonzero weights", "MACs",
              "ORT ms b1", "ORT ms b32", "default profile"]
    body = [[r["method"], f"{100 * r['reduction']:.1f}%", f"{100 * r['accuracy']:.2f}", f"{100 * r['agreement']:.2f}",
             f"{r['weights']:,}", f"{r['macs'] / 1e6:.2f} M", f"{r['lat1']:.3f}", f"{r['lat32']:.2f}", r["valid"]]
            for r in rows]
    return bench.markdown_table(header, body, "lrrrrrrrl")


def verdict(label: str, rows: list[dict]) -> str:
    """Target: smart-onnx smart (channel, fine-tuned) ahead of both peers' best at ~50 % in channel pruning."""
    smart = next(r for r in rows if r["method"].startswith("smart-onnx smart channel (") and "no" not in r["method"])
    peers = [r for r in rows if r["method"].startswith(("onnxsim structured", "Torch-Pruning"))]
    best = max(peers, key=lambda r: r["accuracy"])
    ok = smart["accuracy"] > best["accuracy"]
    return (f"{'PASS' if ok else 'FAIL'} {label}: smart-onnx smart channel {100 * smart['accuracy']:.2f} % vs best "
            f"channel peer {best['method']} {100 * best['accuracy']:.2f} %")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=bench.MODELS, default=list(bench.MODELS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", nargs="+", default=[], metavar="MODEL=STEPS:FINETUNE",
                        help="per-model step budget overriding --steps/--finetune-steps, e.g. fashion=10:10")
    parser.add_argument("--results", type=Path, default=bench.results_path("peers.json"),
                        help="finished models' rows (reused for the same model, steps and seed)")
    parser.add_argument("--write", action="store_true", help=f"replace the '{HEADING}' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    where = bench.machine()
    cache = json.loads(args.results.read_text()) if args.results.exists() else {}
    parts, verdicts = [], []
    budgets = bench.parse_budgets(args.models, args.steps, args.finetune_steps, args.budget)
    for name in args.models:
        steps, ft = budgets[name]
        key = f"{name}|{steps}|{ft}|{args.seed}"
        if key not in cache:
            bm = bench.bench_model(name)
            cache[key] = {"label": bm.label, "rows": compare(bm, steps, ft, args.seed)}
            args.results.write_text(json.dumps(cache, indent=1))
        label, rows = cache[key]["label"], cache[key]["rows"]
        parts.append(f"**{label}** (eval set; dense accuracy {100 * rows[0]['accuracy']:.2f} %)\n\n{table(rows)}")
        verdicts.append(verdict(label, rows))
    import onnxsim
    import torch_pruning

    body = (
        "At equal weight reduction (50 % of the Conv/Gemm weights). onnxsim "
        f"{getattr(onnxsim, '__version__', '?')} does ship a pruning module (`onnxsim.pruning`); its functions are "
        "data-free and do not fine-tune, so smart-onnx is shown with and without fine-tuning. Torch-Pruning "
        f"{torch_pruning.__version__} prunes a torch rebuild of the same network (weights loaded from the ONNX "
        "initializers, checked against onnxruntime) and is fine-tuned with smart-onnx's step budget, Adam lr 1e-4, "
        "batch 32 and distillation + cross-entropy loss. Weights = nonzero prunable weights; MACs = per-layer dense "
        "MACs x weight density (a sparse-kernel view for block/unstructured rows; both as `smart-onnx eval` counts "
        "them); ORT latency = median of 50 runs in ms after 5 warm-ups, 1 thread; default profile = "
        "`smart_onnx.hw.check_model` against the built-in default profile.\n\n"
        + "\n\n".join(parts) + "\n\nTarget (issue 6):\n\n" + "\n".join(f"- {v}" for v in verdicts) + "\n\n"
        + bench.footer("tools.bench_peers", argv, where)
    )
    bench.emit(HEADING, body, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
