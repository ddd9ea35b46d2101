"""onnxruntime CPU: which kept-channel counts its convolution kernels favour (the ort-cpu profile's alignment).

    python -m tools.bench_ort_alignment --repeats 15 --write

A pruned layer pair as channel pruning leaves it: ``Conv(64 -> C, 3x3) -> Relu -> Conv(C -> 64, 3x3)``
on a 1x64x56x56 input (batch 1 and 8), for C from 32 to 80 in steps of 4: C is both the first
conv's output and the second's input channel count. Each model is an onnxruntime CPU session
(1 intra-op thread, default graph optimisations); all C are timed round-robin, so they share the
machine's load, and the median per C is reported beside the time of the next multiple of 16.
MLAS runs these convolutions in its blocked NCHWc layout, 16 channels per block on AVX-512
(``NchwcBlockSize`` in onnxruntime/core/mlas/lib/platform.cpp): a count that is not a multiple of
16 is padded up to one, so it costs about what the next multiple costs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from tools._bench_common import emit, footer, machine, markdown_table

HEADING = "## onnxruntime CPU: channel alignment"
CHANNELS = tuple(range(32, 81, 4))


def pair(c: int) -> onnx.ModelProto:
    rng = np.random.default_rng(c)
    inits = [numpy_helper.from_array(rng.standard_normal((c, 64, 3, 3)).astype(np.float32) * 0.05, "w1"),
             numpy_helper.from_array(rng.standard_normal((64, c, 3, 3)).astype(np.float32) * 0.05, "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 56, 56])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64, 56, 56])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def session(c: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(pair(c).SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure(batch: int, repeats: int) -> dict[int, float]:
    sessions = {c: session(c) for c in CHANNELS}
    x = np.random.default_rng(0).standard_normal((batch, 64, 56, 56)).astype(np.float32)
    for s in sessions.values():
        for _ in range(2):
            s.run(None, {"x": x})
    times: dict[int, list[float]] = {c: [] for c in CHANNELS}
    for _ in range(repeats):
        for c, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {"x": x})
            times[c].append((time.perf_counter() - start) * 1e3)
    return {c: statistics.median(v) for c, v in times.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args(argv)
    where = machine()
    b1, b8 = measure(1, args.repeats), measure(8, max(3, args.repeats // 3))
    rows = []
    for c in CHANNELS:
        up = -(-c // 16) * 16
        rows.append([c, up, f"{c / up:.2f}", f"{b1[c]:.2f}", f"{b1[c] / b1[up]:.2f}", f"{b8[c]:.1f}",
                     f"{b8[c] / b8[up]:.2f}"])
    odd = [c for c in CHANNELS if c % 16]
    macs = statistics.mean(c / (-(-c // 16) * 16) for c in odd)
    mean = {k: statistics.mean(v[c] / v[-(-c // 16) * 16] for c in odd) for k, v in (("b1", b1), ("b8", b8))}
    body = "\n".join([
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        markdown_table(["C", "next multiple of 16 (M)", "MACs C / M", "b1 ms", "b1 ms / ms at M", "b8 ms",
                        "b8 ms / ms at M"], rows),
        "",
        f"Counts that are not a multiple of 16 have on average {macs:.2f} of the MACs of the next multiple of 16, "
        f"and take {mean['b1']:.2f} (batch 1) and {mean['b8']:.2f} (batch 8) of its time: channels pruned below a "
        "block boundary save about nothing, which is why the ort-cpu profile aligns kept counts to 16.",
        "",
        f"- onnxruntime {ort.__version__}",
        footer("tools.bench_ort_alignment", argv, where),
    ])
    emit(HEADING, body, args.write)


if __name__ == "__main__":
    main()
