"""Prune, then quantize: float dense / INT8 dense / float pruned / INT8 pruned on two models (issue 15).

    python -m tools.bench_quantize --steps 50 --finetune-steps 50 --write

Models: the bundled Fashion-MNIST ResNet (64 calibration images from models/fashion_calib.npz,
accuracy on the 2000 labelled images of models/fashion_eval.npz) and EfficientNet-Lite0
(devkit/thirdparty.py; 64 calibration and 64 evaluation crops of real photos,
`photo_crops(64, 224, seed)` with seeds 0 and 1, ImageNet mean/std; no labels, so the metric
is top-1 agreement with the float dense model). The pruned models come from the real CLI,
`smart-onnx prune MODEL --data CALIB --sparsity 0.5 --steps 50 --finetune-steps 50 --threads 2`
(default target npu-block, 16x8x1x1 blocks; `--time-budget 100000` so that the budget does not cut
the steps; prune holds out 20 % of the 64 samples for its own report, so it trains on 51); the
INT8 models from `smart_onnx.quant.quantize_model` (what `smart-onnx quantize` runs, default
settings: uint8 activations, minmax) on the same 64 calibration samples. Pruned models are
cached under `<cache>/bench/quantize`.

Per variant: accuracy (or agreement with the float dense model), agreement with the float
model it was quantized from, prunable weights (non-zero / all), the fraction of 16x8x1x1 blocks
of the prunable weights that are all zero (on the integer weights for INT8), the file size, and
onnxruntime median latency at batch 1 and 32 (2 intra-op threads, the four variants measured
round-robin so they share the machine's load).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from smart_onnx.data import Dataset, dataset_from_arrays, load_dataset
from smart_onnx.eval.ort import make_session, run_model
from smart_onnx.graph import find_prunable_layers
from smart_onnx.hw.qdq import dequantized_view
from smart_onnx.model import OnnxModel, load_model, save_model, tensor_to_array
from smart_onnx.quant import QuantizeOptions, quantize_model
from smart_onnx.report import PruneReport
from tools._bench_common import ROOT, emit, footer, machine, markdown_table, results_path

HEADING = "## Prune, then quantize (INT8)"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
BLOCK = (16, 8, 1, 1)
CALIB = EVAL = 64


def _fashion() -> tuple[Path, Dataset, Dataset, bool]:
    path = ROOT / "models" / "fashion_resnet.onnx"
    model = load_model(path)
    calib = load_dataset(ROOT / "models" / "fashion_calib.npz", model.inputs).take(CALIB)
    evaluation = load_dataset(ROOT / "models" / "fashion_eval.npz", model.inputs)
    return path, calib, evaluation, True


def _efficientnet() -> tuple[Path, Dataset, Dataset, bool]:
    from devkit.thirdparty import photo_crops, real_model

    rm = real_model("efficientnet-lite0")
    model = load_model(rm.path)
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in IMAGENET)
    name = model.inputs[0].name
    calib, evaluation = ((photo_crops(n, 224, seed) - mean) / std for n, seed in ((CALIB, 0), (EVAL, 1)))
    return (rm.path, dataset_from_arrays({name: calib.astype(np.float32)}, model.inputs),
            dataset_from_arrays({name: evaluation.astype(np.float32)}, model.inputs), False)


MODELS = {"fashion": ("Fashion-MNIST ResNet (bundled)", _fashion),
          "efficientnet": ("EfficientNet-Lite0", _efficientnet)}


def _folder() -> Path:
    folder = results_path("quantize")
    folder.mkdir(exist_ok=True)
    return folder


def prune_cli(name: str, path: Path, calib: Dataset, sparsity: float, steps: int, finetune: int) -> tuple[Path, dict]:
    """The real CLI on the calibration samples (cached by its arguments)."""
    folder = _folder()
    tag = f"{name}-s{sparsity}-{steps}-{finetune}"
    out, report = folder / f"{tag}.onnx", folder / f"{tag}.json"
    if not out.exists():
        data = folder / f"{name}-calib{CALIB}.npz"
        np.savez(data, **calib.arrays)
        cmd = [sys.executable, "-m", "smart_onnx.cli.main", "prune", str(path), "--data", str(data), "--sparsity",
               str(sparsity), "--steps", str(steps), "--finetune-steps", str(finetune), "--time-budget", "100000",
               "--threads", "2", "--no-latency", "-q", "-o", str(out), "--report", str(report)]
        sys.stderr.write("running " + " ".join(cmd[2:]) + "\n")
        subprocess.run(cmd, cwd=ROOT, check=True)
    return out, PruneReport.load(report)


def zero_block_fraction(model: OnnxModel) -> float:
    """All-zero 16x8x1x1 blocks (canonical O x I x k, edge blocks partial) over all blocks of the prunable weights."""
    view, _ = dequantized_view(model)
    zero = total = 0
    for layer in find_prunable_layers(view):
        w = np.transpose(tensor_to_array(view.initializers[layer.weight]) == 0, layer.canonical_axes)
        block = tuple(min(b, d) for b, d in zip((BLOCK + (1,) * w.ndim)[: w.ndim], w.shape))
        grid = [-(-d // b) for d, b in zip(w.shape, block)]
        padded = np.ones([g * b for g, b in zip(grid, block)], bool)
        padded[tuple(slice(0, d) for d in w.shape)] = w
        cells = padded.reshape([x for g, b in zip(grid, block) for x in (g, b)])
        whole = cells.all(axis=tuple(range(1, 2 * w.ndim, 2)))
        zero += int(whole.sum())
        total += int(whole.size)
    return zero / total if total else 0.0


def weights(model: OnnxModel) -> tuple[int, int]:
    """(non-zero, all) elements of the prunable weights (INT8: the integer weights)."""
    view, _ = dequantized_view(model)
    arrays = [tensor_to_array(view.initializers[lay.weight]) for lay in find_prunable_layers(view)]
    return sum(int(np.count_nonzero(a)) for a in arrays), sum(int(a.size) for a in arrays)


def predictions(session, data: Dataset) -> np.ndarray:
    out = []
    for batch in data.batches(32):
        logits = next(iter(run_model(session, batch.inputs).values()))
        out.append(np.asarray(logits).reshape(len(logits), -1).argmax(1))
    return np.concatenate(out)


def latencies(sessions: dict[str, object], feeds: dict[str, np.ndarray], batch: int, repeats: int) -> dict[str, float]:
    """Median ms per variant, measured round-robin after 3 warm-up runs each."""
    batched = {k: np.concatenate([v] * (-(-batch // len(v))))[:batch] for k, v in feeds.items()}
    for s in sessions.values():
        for _ in range(3):
            run_model(s, batched)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(repeats):
        for k, s in sessions.items():
            start = time.perf_counter()
            run_model(s, batched)
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(key: str, args: argparse.Namespace) -> tuple[list[list[str]], dict]:
    label, prepare = MODELS[key]
    path, calib, evaluation, labelled = prepare()
    dense = load_model(path)
    pruned_path, report = prune_cli(key, path, calib, args.sparsity, args.steps, args.finetune_steps)
    pruned = load_model(pruned_path)
    folder = _folder()
    start = time.perf_counter()
    int8_dense = quantize_model(dense, calib, QuantizeOptions())
    int8_pruned = quantize_model(pruned, calib, QuantizeOptions(), original=dense)
    quant_s = (time.perf_counter() - start) / 2
    variants = {"float dense": dense, "INT8 dense": int8_dense.model, "float pruned": pruned,
                "INT8 pruned": int8_pruned.model}
    files = {}
    for name, model in variants.items():
        files[name] = save_model(model, folder / f"{key}-{name.replace(' ', '-')}.onnx")
    sessions = {name: make_session(files[name], threads=2) for name in variants}
    preds = {name: predictions(s, evaluation) for name, s in sessions.items()}
    parents = {"INT8 dense": "float dense", "INT8 pruned": "float pruned"}
    feeds = {k: v[:1] for k, v in evaluation.arrays.items()}
    lat1 = latencies(sessions, feeds, 1, args.repeats)
    lat32 = latencies(sessions, feeds, 32, max(3, args.repeats // 4))
    rows = []
    for name, model in variants.items():
        nz, total = weights(model)
        quality = (f"{100 * np.mean(preds[name] == evaluation.labels):.2f}" if labelled
                   else f"{100 * np.mean(preds[name] == preds['float dense']):.2f}")
        parent = parents.get(name)
        agree = f"{100 * np.mean(preds[name] == preds[parent]):.2f}" if parent else "-"
        rows.append([label, name, quality, agree, f"{nz:,} / {total:,}", f"{100 * zero_block_fraction(model):.1f}",
                     f"{files[name].stat().st_size / 1e6:.2f}", f"{lat1[name]:.2f}", f"{lat32[name]:.1f}"])
    info = {"label": label, "samples": len(evaluation), "labelled": labelled, "steps": report.steps.to_dict(),
            "sparsity": report.sparsity.to_dict(), "zeros_kept": int8_pruned.info.zeros.kept,
            "restored": int8_pruned.info.zeros.restored, "quantize_s": quant_s,
            "int8_vs_float_pruned": float(np.mean(preds["INT8 pruned"] == preds["float pruned"])),
            "prune_seconds": report.seconds.total}
    return rows, info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--finetune-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs at batch 1 (batch 32: a quarter)")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    where = machine()
    rows, infos = [], []
    for key in args.models:
        r, info = bench(key, args)
        rows += r
        infos.append(info)
    header = ["model", "variant", "accuracy % (Fashion) / agreement with float dense % (EfficientNet)",
              "agreement with its float model %", "prunable weights non-zero / all", "all-zero 16x8 blocks %",
              "file MB", "latency b1 ms", "latency b32 ms"]
    notes = []
    for info in infos:
        steps = info["steps"] or {}
        target = "met" if info["int8_vs_float_pruned"] >= 0.98 else "MISSED"
        notes.append(
            f"- {info['label']}: {info['samples']} evaluation samples; pruned to "
            f"{100 * info['sparsity']['achieved_params']:.1f} % of the prunable weights (requested "
            f"{100 * info['sparsity']['requested']:.0f} %) in {steps.get('steps', '?')} search + "
            f"{steps.get('finetune_steps', '?')} fine-tune steps ({info['prune_seconds']:.0f} s); INT8 pruned agrees "
            f"with float pruned on {100 * info['int8_vs_float_pruned']:.2f} % (target >= 98 %: {target}); every "
            f"float zero is an integer zero: {'yes' if info['zeros_kept'] else 'NO'} ({info['restored']:,} small "
            f"weights kept off zero); quantization took {info['quantize_s']:.1f} s per model")
    body = "\n".join([
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        markdown_table(header, rows, "ll" + "r" * 7),
        "",
        *notes,
        "",
        footer("tools.bench_quantize", argv, where),
    ])
    emit(HEADING, body, args.write)


if __name__ == "__main__":
    main()
