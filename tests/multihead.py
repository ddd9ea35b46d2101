"""A real, briefly trained three-head model for tests of per-output fidelity.

Pruning a model with several outputs of very different scales (class logits of a few units, box corners and
landmarks in pixels 0..27) must keep every output faithful, not just the one with the largest numbers. The tests of
that need a model whose heads really do their job, so this module trains one on the bundled
Fashion-MNIST samples (``models/fashion_calib.npz``, 1000 TRAIN images) and evaluates it on
``models/fashion_eval.npz`` (2000 TEST images):

* ``class`` logits ``[N, 10]``: cross-entropy on the labels (optionally ending in Softmax);
* ``boxes`` ``[N, 4]``: ``(x0, y0, x1, y1)`` in pixels 0..27, the bounding box of the pixels brighter
  than :data:`BOX_THRESHOLD`; MSE in pixel units;
* ``landmarks`` ``[N, 10]``: five ``(x, y)`` points in pixels, the intensity centroid of the whole image
  and of its four 14x14 quadrants (top-left, top-right, bottom-left, bottom-right); MSE in pixel units.

Architecture (``_MultiHeadNet``, 463k parameters): Conv3x3 1->16 (28x28), Conv3x3 16->32 stride 2 (14x14),
Conv3x3 32->64 stride 2 (7x7), Conv3x3 64->64 (7x7), each with BatchNorm (folded into the Conv on export)
and ReLU. The class head is global average pooling + Gemm 64->10; the two geometry heads each flatten the
7x7 map (they need positions) and apply Gemm 3136->64 + ReLU + Gemm 64->k. Every Conv/Gemm weight but the
first Conv and the 10/4/10-wide output layers has both channel dimensions multiples of 16, so 16x8 blocks fit.

Training: 400 Adam steps (lr 2e-3 with cosine decay, batch 32, loss ``CE + 0.05 * (MSE_boxes +
MSE_landmarks)``), the regression biases initialised to the targets' means; seeded with ``torch.manual_seed``
and a seeded generator for the batches, on one torch thread so the weights do not depend on the caller's
thread count (and idle threads do not spin on a busy machine). About 9 s of one core, once per seed and process.

Measured quality, seed 0 (torch 2.13.0 CPU), on the 2000 eval samples: class accuracy **78.9%**, boxes mean
absolute error **0.43 px**, landmarks MAE **0.31 px** (predicting the training means instead: 2.45 px and
1.29 px); onnxruntime agrees with torch to ~1e-6 on these figures. The outputs' scales differ as intended:
mean |value| 2.3 for the logits, 13.6 for the boxes, 14.0 for the landmarks. ``MultiHead.quality`` holds the
numbers of the model actually built.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BOX_THRESHOLD", "MultiHead", "box_targets", "build_multihead", "landmark_targets", "pixels"]

_MODELS = Path(__file__).resolve().parents[1] / "models"
# The bundled npz files hold (pixel / 255 - MEAN) / STD (models/README.md, tools/train_fashion_resnet.py).
_MEAN, _STD = 0.2860, 0.3530
# Intensity (of [0, 1]) above which a pixel belongs to the object, so that faint halos around some
# Fashion-MNIST items do not stretch their boxes.
BOX_THRESHOLD = 0.2
_SIZE = 28
_INPUT = "input"
_STEPS, _BATCH, _LR, _GEOM_WEIGHT = 400, 32, 2e-3, 0.05
_OPSET, _MAX_IR = 17, 10


@dataclass
class MultiHead:
    """A trained three-head model and its data.

    Attributes:
        proto: the exported model (input ``input`` float32 ``[batch, 1, 28, 28]``, three outputs in the order
            class, boxes, landmarks, named as asked); a fresh copy per :func:`build_multihead` call.
        calib: the 1000 training samples, ``{"input": ..., "label": ...}`` (what ``--data`` accepts).
        eval: the 2000 held-out samples, same keys.
        calib_targets / eval_targets: the regression targets keyed by the boxes and landmarks output names
            (the class head's target is ``label``).
        quality: measured on ``eval`` with the exported model's torch twin: ``accuracy``, ``boxes_mae`` and
            ``landmarks_mae`` (pixels).
    """

    proto: onnx.ModelProto
    calib: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    calib_targets: dict[str, np.ndarray] = field(default_factory=dict)
    eval_targets: dict[str, np.ndarray] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.proto.graph.output]

    def save(self, directory: str | Path) -> tuple[Path, Path, Path]:
        """Write ``multihead.onnx``, ``multihead_calib.npz`` and ``multihead_eval.npz`` for CLI tests.

        Returns:
            (model path, calibration npz path, evaluation npz path).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model, calib, evaluation = (directory / n for n in ("multihead.onnx", "multihead_calib.npz",
                                                            "multihead_eval.npz"))
        onnx.save_model(self.proto, model)
        np.savez(calib, **self.calib)
        np.savez(evaluation, **self.eval)
        return model, calib, evaluation


def pixels(x: np.ndarray) -> np.ndarray:
    """Normalised inputs ``N x 1 x 28 x 28`` back to intensities in [0, 1], ``N x 28 x 28``."""
    return np.clip(x[:, 0].astype(np.float64) * _STD + _MEAN, 0.0, 1.0)


def box_targets(x: np.ndarray, threshold: float = BOX_THRESHOLD) -> np.ndarray:
    """``(x0, y0, x1, y1)`` of the pixels above ``threshold``, float32 ``N x 4`` in pixels (inclusive corners).

    An image with no such pixel gets the whole frame ``(0, 0, 27, 27)``.
    """
    on = pixels(x) > threshold
    out = np.tile(np.array([0, 0, _SIZE - 1, _SIZE - 1], np.float32), (len(on), 1))
    cols, rows = on.any(axis=1), on.any(axis=2)  # N x W (some row lit), N x H (some column lit)
    lit = cols.any(axis=1)
    idx = np.arange(_SIZE)
    big = _SIZE + 1
    out[lit, 0] = np.where(cols, idx, big).min(axis=1)[lit]
    out[lit, 1] = np.where(rows, idx, big).min(axis=1)[lit]
    out[lit, 2] = np.where(cols, idx, -1).max(axis=1)[lit]
    out[lit, 3] = np.where(rows, idx, -1).max(axis=1)[lit]
    return out


def landmark_targets(x: np.ndarray) -> np.ndarray:
    """Intensity centroids ``(x, y)`` of the image and its four quadrants, float32 ``N x 10`` in pixels.

    Quadrants in the order top-left, top-right, bottom-left, bottom-right; coordinates are in the whole
    image's frame. A dark region's point is its centre.
    """
    img = pixels(x)
    half = _SIZE // 2
    regions = [(0, _SIZE, 0, _SIZE), (0, half, 0, half), (0, half, half, _SIZE), (half, _SIZE, 0, half),
               (half, _SIZE, half, _SIZE)]
    points = []
    for r0, r1, c0, c1 in regions:
        w = img[:, r0:r1, c0:c1]
        mass = w.sum(axis=(1, 2))
        ys, xs = np.arange(r0, r1, dtype=np.float64), np.arange(c0, c1, dtype=np.float64)
        safe = np.where(mass > 0, mass, 1.0)
        cx = np.where(mass > 0, (w.sum(axis=1) * xs).sum(axis=1) / safe, (c0 + c1 - 1) / 2)
        cy = np.where(mass > 0, (w.sum(axis=2) * ys).sum(axis=1) / safe, (r0 + r1 - 1) / 2)
        points += [cx, cy]
    return np.stack(points, axis=1).astype(np.float32)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class _MultiHeadNet(nn.Module):
    def __init__(self, softmax_class: bool = False) -> None:
        super().__init__()
        self.softmax_class = softmax_class
        self.trunk = nn.Sequential(_conv(1, 16), _conv(16, 32, 2), _conv(32, 64, 2), _conv(64, 64))
        self.cls = nn.Linear(64, 10)
        flat = 64 * 7 * 7
        self.boxes = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, 4))
        self.landmarks = nn.Sequential(nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        logits = self.cls(h.mean(dim=(2, 3)))
        if self.softmax_class:
            logits = torch.softmax(logits, dim=1)
        return logits, self.boxes(h), self.landmarks(h)


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(_MODELS / name) as z:
        return {_INPUT: z["input"].astype(np.float32), "label": z["label"].astype(np.int64)}


@functools.cache
def _data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    calib, evaluation = _load("fashion_calib.npz"), _load("fashion_eval.npz")
    for d in (calib, evaluation):
        d["boxes"], d["landmarks"] = box_targets(d[_INPUT]), landmark_targets(d[_INPUT])
        for a in d.values():
            a.setflags(write=False)  # shared between builds: callers get copies
    return calib, evaluation


@functools.cache
def _trained(seed: int) -> dict[str, torch.Tensor]:
    """The trained weights for ``seed``; cached because several tests build the model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seed)
    finally:
        torch.set_num_threads(threads)


def _train(seed: int) -> dict[str, torch.Tensor]:
    calib, _ = _data()
    torch.manual_seed(seed)
    net = _MultiHeadNet()
    x = torch.from_numpy(calib[_INPUT].copy())
    y = torch.from_numpy(calib["label"].copy())
    boxes, marks = torch.from_numpy(calib["boxes"].copy()), torch.from_numpy(calib["landmarks"].copy())
    with torch.no_grad():  # start the regressors at the mean target: the first steps then learn shapes, not offsets
        net.boxes[-1].bias.copy_(boxes.mean(0))
        net.landmarks[-1].bias.copy_(marks.mean(0))
    opt = torch.optim.Adam(net.parameters(), lr=_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, _STEPS)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    order = torch.randperm(len(x), generator=gen)
    pos = 0
    for _ in range(_STEPS):
        if pos + _BATCH > len(order):
            order, pos = torch.randperm(len(x), generator=gen), 0
        idx = order[pos : pos + _BATCH]
        pos += _BATCH
        logits, pb, pm = net(x[idx])
        loss = F.cross_entropy(logits, y[idx]) + _GEOM_WEIGHT * (
            F.mse_loss(pb, boxes[idx]) + F.mse_loss(pm, marks[idx])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _quality(net: _MultiHeadNet, data: dict[str, np.ndarray]) -> dict[str, float]:
    with torch.no_grad():
        logits, pb, pm = net.eval()(torch.from_numpy(data[_INPUT].copy()))
    return {
        "accuracy": float((logits.argmax(1).numpy() == data["label"]).mean()),
        "boxes_mae": float(np.abs(pb.numpy() - data["boxes"]).mean()),
        "landmarks_mae": float(np.abs(pm.numpy() - data["landmarks"]).mean()),
    }


@functools.cache
def _exported(output_names: tuple[str, str, str], softmax_class: bool, seed: int) -> tuple[bytes, tuple]:
    net = _MultiHeadNet(softmax_class)
    net.load_state_dict(_trained(seed))
    net.eval()
    _, evaluation = _data()
    quality = tuple(_quality(net, evaluation).items())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(
            net, (torch.zeros(2, 1, _SIZE, _SIZE),), buf, dynamo=False, opset_version=_OPSET, input_names=[_INPUT],
            output_names=list(output_names), dynamic_axes={n: {0: "batch"} for n in (_INPUT, *output_names)},
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, _MAX_IR)
    return proto.SerializeToString(), quality


def build_multihead(
    output_names: Sequence[str] = ("class_logits", "boxes", "landmarks"),
    softmax_class: bool = False,
    seed: int = 0,
) -> MultiHead:
    """The trained three-head model, exported to ONNX, with its calibration and evaluation data.

    Args:
        output_names: names of the class, boxes and landmarks outputs, in that order; neutral names
            (``"out0", "out1", "out2"``) let tests check that roles are inferred from the graph alone.
        softmax_class: end the class head in Softmax, so the first output holds probabilities.
        seed: training seed; the weights are trained once per seed and process.

    Returns:
        A :class:`MultiHead` whose proto and arrays the caller may modify freely.
    """
    names = tuple(output_names)
    if len(names) != 3 or len(set(names)) != 3:
        raise ValueError(f"need three distinct output names, got {names}")
    blob, quality = _exported(names, bool(softmax_class), int(seed))
    calib, evaluation = _data()
    keep = (_INPUT, "label")
    return MultiHead(
        proto=onnx.load_from_string(blob),
        calib={k: calib[k].copy() for k in keep},
        eval={k: evaluation[k].copy() for k in keep},
        calib_targets={names[1]: calib["boxes"].copy(), names[2]: calib["landmarks"].copy()},
        eval_targets={names[1]: evaluation["boxes"].copy(), names[2]: evaluation["landmarks"].copy()},
        quality=dict(quality),
    )
