"""Sweep SMART's search settings on the bundled Fashion-MNIST ResNet (block 16x8x1x1, target npu-block).

Each configuration is one `prune` through the library, one torch thread, accuracy on models/fashion_eval.npz.
    python -m tools.sweep_defaults --config lr=3e-4,steps=400,finetune_steps=200 --config lr=1e-4
"""

from __future__ import annotations

import argparse
import time

import torch

from smart_onnx import load_model
from smart_onnx.data import load_dataset
from smart_onnx.hw import load_profile
from smart_onnx.prune import PruneOptions, prune
from smart_onnx.search import SearchConfig

MODEL, CALIB, EVAL = "models/fashion_resnet.onnx", "models/fashion_calib.npz", "models/fashion_eval.npz"


def _config(text: str) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        out[key] = int(value) if key in ("steps", "finetune_steps", "batch_size", "seed") else float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="SearchConfig overrides, k=v,k=v")
    parser.add_argument("--sparsity", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(MODEL)
    calib, held = load_dataset(CALIB, model.inputs), load_dataset(EVAL, model.inputs)
    print("| settings | accuracy % | dense % | achieved sparsity | check | seconds |")
    print("|---|---:|---:|---:|---|---:|")
    for text in args.config or [""]:
        start = time.perf_counter()
        out = prune(model, calib, held, PruneOptions(target=load_profile("npu-block"), latency=False,
                                                     search=SearchConfig(sparsity=args.sparsity, **_config(text))))
        acc = next(o for o in out.report.eval.outputs if o.accuracy is not None)
        print(f"| {text or 'defaults'} | {100 * acc.accuracy:.2f} | {100 * acc.reference_accuracy:.2f} | "
              f"{out.report.sparsity.achieved_params:.1%} | {out.report.check.passed} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
