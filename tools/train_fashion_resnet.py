"""Train the bundled demo model: a small ResNet on Fashion-MNIST, exported to ONNX with its data sets.

    python -m tools.train_fashion_resnet        # 4 epochs; about 1 min/epoch on 2 idle CPU cores, far more when
                                                # the cores are shared (see models/README.md)

Writes ``models/fashion_resnet.onnx``, ``models/fashion_calib.npz`` (1000 TRAIN samples) and
``models/fashion_eval.npz`` (2000 TEST samples). Both npz files hold ``input`` (float32 N x 1 x 28 x 28,
normalised with :data:`MEAN`/:data:`STD`) and ``label`` (int64). Benchmarks that need more held-out
samples than the committed 2000 call :func:`load_test`. The run is seeded and deterministic.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from devkit.thirdparty import fashion_mnist

__all__ = [
    "MEAN", "MODELS_DIR", "STD", "SmallResNet", "evaluate", "export_onnx", "load_test", "normalise", "ort_logits",
    "save_npz", "train",
]

log = logging.getLogger(__name__)

# Pixel statistics of the Fashion-MNIST training split, on [0, 1] intensities.
MEAN, STD = 0.2860, 0.3530
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
ONNX_NAME, CALIB_NAME, EVAL_NAME = "fashion_resnet.onnx", "fashion_calib.npz", "fashion_eval.npz"
_OPSET, _IR_VERSION = 17, 8
_MAX_ONNX_BYTES, _MAX_NPZ_BYTES = 2 << 20, 3 << 20


def normalise(images: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """uint8 images N x H x W -> float32 N x 1 x H x W, scaled to [0, 1] then standardised (torchvision's
    ``ToTensor`` + ``Normalize``)."""
    x = images.astype(np.float32)[:, None] / np.float32(255.0)
    return (x - np.float32(mean)) / np.float32(std)


def _subset(split: str, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = fashion_mnist(split)
    order = np.random.default_rng(seed).permutation(len(labels))[:n]
    return normalise(images[order]), labels[order]


def load_test(n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out Fashion-MNIST TEST samples in a fixed shuffled order, normalised like the model's input.

    The first 2000 (with the default seed) are exactly ``models/fashion_eval.npz``.

    Args:
        n: how many samples (at most 10000); ``None`` for all of them.
        seed: seed of the shuffle.

    Returns:
        (inputs float32 n x 1 x 28 x 28, labels int64 n).
    """
    return _subset("test", n, seed)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem conv, three stages of basic blocks (stride-2 downsampling with 1x1 projections), GAP, linear head."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64), blocks: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers, cin = [], widths[0]
        for stage, width in enumerate(widths):
            for b in range(blocks):
                layers.append(_BasicBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.stages = nn.Sequential(*layers)
        # AdaptiveAvgPool2d + flatten, as torchvision does: exports to GlobalAveragePool -> Flatten -> Gemm,
        # the pattern real exported CNNs carry (x.mean(dim=(2, 3)) would export to a ReduceMean instead).
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch: int = 128, lr: float = 0.1, seed: int = 0
) -> None:
    """SGD (Nesterov momentum, weight decay) with a per-step cosine schedule and random horizontal flips."""
    gen = torch.Generator().manual_seed(seed)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    steps_per_epoch = math.ceil(len(labels) / batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order, start, total = torch.randperm(len(labels), generator=gen), time.perf_counter(), 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            xb = inputs[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log.info("epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, epochs, total / steps_per_epoch,
                 time.perf_counter() - start)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on normalised inputs."""
    model.eval()
    preds = [model(torch.from_numpy(x[i : i + batch])).argmax(1) for i in range(0, len(x), batch)]
    return float((torch.cat(preds).numpy() == y).mean())


def export_onnx(model: nn.Module, path: Path) -> onnx.ModelProto:
    """Legacy (TorchScript) export at opset 17: input ``input`` [batch,1,28,28], output ``logits``, IR version 8."""
    buf = io.BytesIO()
    torch.onnx.export(
        model.eval(), (torch.zeros(2, 1, 28, 28),), buf, dynamo=False, opset_version=_OPSET,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = _IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, path)
    return proto


def ort_logits(path: Path, x: np.ndarray, batch: int = 500) -> np.ndarray:
    """Run a single-input, single-output ONNX model in onnxruntime over ``x`` in batches."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def _check_onnx(path: Path, model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Max abs logit difference torch vs onnxruntime, and the ONNX model's accuracy on ``x``."""
    got = ort_logits(path, x)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max()), float((got.argmax(1) == y).mean())


def save_npz(path: Path, x: np.ndarray, y: np.ndarray, input_name: str = "input") -> int:
    """Write a calibration/eval set (``input_name`` and ``label``) compressed and atomically; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:  # a file object: numpy would append ".npz" to a tmp name
        np.savez_compressed(fh, **{input_name: x, "label": y})
    tmp.replace(path)
    return path.stat().st_size


def _save_committed_npz(path: Path, x: np.ndarray, y: np.ndarray) -> int:
    size = save_npz(path, x, y)
    if size >= _MAX_NPZ_BYTES:
        raise SystemExit(f"{path} is {size} bytes; the limit for a committed data file is {_MAX_NPZ_BYTES}")
    return size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output folder (default: models/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    start = time.perf_counter()
    x_train, y_train = _subset("train", None, args.seed)
    x_test, y_test = load_test(seed=args.seed)
    model = SmallResNet().to(memory_format=torch.channels_last)
    log.info("SmallResNet: %d parameters", sum(p.numel() for p in model.parameters()))
    train(model, x_train, y_train, epochs=args.epochs, seed=args.seed)
    train_s = time.perf_counter() - start
    acc = evaluate(model, x_test, y_test)

    onnx_path = args.out / ONNX_NAME
    export_onnx(model, onnx_path)
    diff, onnx_acc = _check_onnx(onnx_path, model, x_test, y_test)
    onnx_size = onnx_path.stat().st_size
    if onnx_size >= _MAX_ONNX_BYTES or diff > 1e-3 or abs(onnx_acc - acc) > 1e-3:
        raise SystemExit(f"export check failed: {onnx_size} bytes, max abs diff {diff:.2e}, ORT acc {onnx_acc:.4f}")
    calib_size = _save_committed_npz(args.out / CALIB_NAME, x_train[:1000], y_train[:1000])
    eval_size = _save_committed_npz(args.out / EVAL_NAME, x_test[:2000], y_test[:2000])
    eval_acc = evaluate(model, x_test[:2000], y_test[:2000])
    sys.stdout.write(
        f"test accuracy {acc:.4f} (10000 samples; onnxruntime {onnx_acc:.4f}, max abs logit diff {diff:.2e}); "
        f"fashion_eval.npz accuracy {eval_acc:.4f}\n"
        f"training {train_s:.0f} s, total {time.perf_counter() - start:.0f} s; sizes: {ONNX_NAME} {onnx_size} B, "
        f"{CALIB_NAME} {calib_size} B, {EVAL_NAME} {eval_size} B\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
