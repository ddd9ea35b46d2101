"""MiniLM (paraphrase-MiniLM-L3-v2) in channel mode: attention heads and FFN widths removed physically.

    python -m tools.bench_transformer --configs channel:0.3,channel:0.45 --threads 2 --time-budget 150
    python -m tools.bench_transformer --peers structured-wanda,attention-head-wanda,wanda,sparsegpt
    python -m tools.bench_transformer --latency /tmp/bench_transformer/minilm-channel-0.3.onnx ...

Per configuration: the weights physically removed (all prunable MatMuls, and the whole file), the heads and FFN
width kept per layer, and the held-out cosine of the sentence embedding (output ``461``, mean pooling) and of the
hidden states; ``--latency`` (a separate pass over the saved models, interleaved) gives onnxruntime latency at
batch 1 and 32 against the dense model. The data are tools.bench_fidelity's MiniLM rows (random token ids, not
English: no tokenizer is available offline; ``--calibration N`` takes N calibration rows instead of 48). Everything
is measured on the models themselves (weights, onnxruntime outputs), not read from the prune report. ``--peers``
runs onnxsim 0.8.1's recipes at the same fractions instead, measured the same way. Results: docs/benchmarks.md,
"Transformers: attention heads and FFN widths in channel mode".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from onnx import numpy_helper

from smart_onnx.data import Dataset
from smart_onnx.eval.ort import make_session, measure_latency, run_model
from smart_onnx.graph import analyze
from smart_onnx.model import OnnxModel, load_model, save_model
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig
from tools.bench_fidelity import RECIPES, parse_configs

EMBEDDING, HIDDEN = "461", "onnx::Shape_422"
HEAD_DIM = 32


def _weights(model: OnnxModel) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}


def _cosine(ref: np.ndarray, cand: np.ndarray) -> float:
    r, c = ref.reshape(len(ref), -1).astype(np.float64), cand.reshape(len(cand), -1).astype(np.float64)
    return float(np.mean(np.einsum("ij,ij->i", r, c) / (np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1))))


def _outputs(model: OnnxModel, data: Dataset, threads: int) -> dict[str, np.ndarray]:
    session = make_session(model, threads=threads)
    runs = [run_model(session, b.inputs) for b in data.batches(8)]
    return {k: np.concatenate([r[k] for r in runs]) for k in (EMBEDDING, HIDDEN)}


def latency_table(paths: list[Path], threads: int, rounds: int = 3) -> dict[str, dict[int, float]]:
    """Median onnxruntime latency (ms) at batch 1 and 32 of each model, the models interleaved round by round
    (a load that changes during the run then hits them alike); the median over rounds of 50-run medians."""
    from devkit.thirdparty import _minilm_feeds

    feeds = _minilm_feeds(32, 2)
    sessions = {str(p): make_session(load_model(p), threads=threads) for p in paths}
    runs: dict[str, dict[int, list[float]]] = {name: {1: [], 32: []} for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            for b in (1, 32):
                part = {k: v[:b] for k, v in feeds.items()}
                runs[name][b].append(measure_latency(session, part, repeats=50, threads=threads).median_ms)
    return {name: {b: float(np.median(v)) for b, v in per.items()} for name, per in runs.items()}


def _structure(dense: OnnxModel, pruned: OnnxModel) -> dict[str, Any]:
    """Prunable weights before/after (elements and nonzeros, counted on the tensors), heads and FFN width per layer."""
    layers = analyze(dense, {i.name: (1, 16) for i in dense.inputs}).layers
    before = {t.name: t for t in dense.graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer if t.name in {x.weight for x in layers}}
    return {
        "prunable_before": int(sum(np.prod(before[x.weight].dims) for x in layers)),
        "prunable_after": int(sum(after[x.weight].size for x in layers)),
        "prunable_nonzero": int(sum(np.count_nonzero(after[x.weight]) for x in layers)),
        "file_weights_before": dense.num_weights(),
        "file_weights_after": pruned.num_weights(),
        "heads_kept": [after[x.weight].shape[1] // HEAD_DIM for x in layers if x.name.endswith("self/query/MatMul")],
        "ffn_kept": [after[x.weight].shape[1] for x in layers if x.name.endswith("intermediate/dense/MatMul")],
    }


def peer_rows(dense: OnnxModel, calib: Dataset, held: Dataset, sparsity: float, threads: int,
              reference: dict[str, np.ndarray], which: list[str]) -> list[dict[str, Any]]:
    """onnxsim 0.8.1's recipes on the same data at ``sparsity``: its structured ones (channels, attention heads of
    fused Attention nodes) and its unstructured Wanda; measured as ours are."""
    import onnxsim
    from onnxsim import pruning as peer

    from smart_onnx.model import copy_proto, normalize

    batches = [dict(b.inputs) for b in calib.batches(8)]
    recipes = {
        "structured-wanda (per layer)": lambda m: peer.apply_structured_wanda_pruning(
            m, calibration_data=batches, sparsity=sparsity),
        "structured-wanda (global)": lambda m: peer.apply_structured_wanda_pruning(
            m, calibration_data=batches, sparsity=sparsity, global_sparsity=True),
        "attention-head-wanda": lambda m: peer.apply_attention_head_wanda_pruning(
            m, calibration_data=batches, sparsity=sparsity),
        "wanda (unstructured)": lambda m: peer.apply_wanda_pruning(m, calibration_data=batches, sparsity=sparsity),
        "sparsegpt (unstructured)": lambda m: peer.apply_sparsegpt_pruning(
            m, calibration_data=batches, sparsity=sparsity),
    }
    rows = []
    for label, apply in recipes.items():
        if not any(label.startswith(w) for w in which):
            continue
        start = time.perf_counter()
        try:
            out = normalize(apply(copy_proto(dense.proto)))
        except Exception as e:  # a recipe that finds nothing it can match may raise
            rows.append({"config": f"onnxsim {onnxsim.__version__} {label} {sparsity:.0%}", "error": str(e)[:200]})
            continue
        got = _outputs(out, held, threads)
        rows.append({"config": f"onnxsim {onnxsim.__version__} {label} {sparsity:.0%}",
                     "wall_s": time.perf_counter() - start, **_structure(dense, out),
                     "cosine_embedding": _cosine(reference[EMBEDDING], got[EMBEDDING]),
                     "cosine_hidden": _cosine(reference[HIDDEN], got[HIDDEN])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="channel:0.3,channel:0.45")
    parser.add_argument("--time-budget", type=float, default=150.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", type=int, default=None,
                        help="calibration rows (_minilm_feeds(N, seed=0)); default: tools.bench_fidelity's 48")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_transformer"))
    parser.add_argument("--peers", default="", help="run these onnxsim recipes at each fraction instead of ours "
                        "(comma-separated: structured-wanda,attention-head-wanda,wanda,sparsegpt)")
    parser.add_argument("--latency", nargs="+", type=Path, metavar="MODEL",
                        help="only measure latency: the dense model and these, interleaved")
    args = parser.parse_args()
    if args.latency:
        print(json.dumps(latency_table([RECIPES["minilm"].path(), *args.latency], args.threads), indent=1))
        return
    from devkit.thirdparty import _minilm_feeds

    recipe = RECIPES["minilm"]
    dense = load_model(recipe.path())
    calib, held = recipe.data(dense)
    if args.calibration:
        calib = Dataset(_minilm_feeds(args.calibration, 0), source=f"_minilm_feeds({args.calibration}, seed=0)")

    args.out.mkdir(parents=True, exist_ok=True)
    reference = _outputs(dense, held, args.threads)
    rows = []
    if args.peers:
        for cfg in parse_configs(args.configs):
            for row in peer_rows(dense, calib, held, cfg.sparsity, args.threads, reference, args.peers.split(",")):
                rows.append(row)
                print(json.dumps(row), flush=True)
        (args.out / "peers.json").write_text(json.dumps(rows, indent=1))
        return
    for cfg in parse_configs(args.configs):
        search = SearchConfig(sparsity=cfg.sparsity, time_budget=args.time_budget, seed=args.seed)
        options = PruneOptions(mode=cfg.mode, block=(16, 8, 1, 1) if cfg.mode == "block" else None, search=search,
                               latency=False)
        start = time.perf_counter()
        outcome = prune(dense, calib, None, options)
        wall = time.perf_counter() - start
        path = save_model(outcome.model, args.out / f"minilm-{cfg.mode}-{cfg.sparsity}.onnx")
        got = _outputs(outcome.model, held, args.threads)
        row = {"config": cfg.label, "wall_s": wall, "calibration_rows": len(calib), **_structure(dense, outcome.model),
               "training": outcome.report.training.to_dict(), "steps": outcome.report.steps.to_dict(),
               "cosine_embedding": _cosine(reference[EMBEDDING], got[EMBEDDING]),
               "cosine_hidden": _cosine(reference[HIDDEN], got[HIDDEN]), "model": str(path)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
