"""A CRNN-like text-line recognizer with random weights, exported to ONNX: the memory benchmark's sequence model.

    python -m devkit.crnn --out /tmp/crnn                      # crnn.onnx + crnn_calib.npz (51 samples)
    python -m devkit.crnn --out /tmp/crnn --classes 97 --samples 510

The shape of the models users prune for OCR (issue 13: a 2.7M-weight CTC recognizer, output [N, T, C]):
conv + BatchNorm + ReLU blocks on a 1x32xW grayscale line, pooling the height from 32 to 1 while the
width only drops 4x, the height collapsed into the channels, a bidirectional LSTM over the T = W/4 columns,
a Linear to C classes (the CTC blank included) and log_softmax, batch first. With the defaults (C = 6625,
a CJK character set, hidden 128) it holds about 2.6M weights, most of them in the classifier.
Exported with the legacy exporter (opset 17, dynamic batch), which folds BatchNorm into the convs.
"""

from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

__all__ = ["CRNN", "build", "export", "sample_images"]

OPSET = 17
HEIGHT = 32


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class CRNN(nn.Module):
    """Conv stack (height 32 -> 1, width / 4), BiLSTM over the columns, per-column class log-probabilities."""

    def __init__(self, classes: int = 6625, hidden: int = 128, channels: tuple[int, ...] = (32, 64, 128, 128, 256)):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.features = nn.Sequential(
            *_block(1, c1), nn.MaxPool2d(2, 2),                  # 16 x W/2
            *_block(c1, c2), nn.MaxPool2d(2, 2),                 # 8 x W/4
            *_block(c2, c3), *_block(c3, c4), nn.MaxPool2d((2, 1), (2, 1)),  # 4 x W/4
            *_block(c4, c5), nn.MaxPool2d((2, 1), (2, 1)),       # 2 x W/4
            nn.Conv2d(c5, c5, (2, 1), bias=False), nn.BatchNorm2d(c5), nn.ReLU(),  # 1 x W/4: height collapsed
        )
        self.rnn = nn.LSTM(c5, hidden, bidirectional=True, batch_first=True)
        self.classifier = nn.Linear(2 * hidden, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        f = self.features(image).squeeze(2).transpose(1, 2)  # [N, C, 1, T] -> [N, T, C]
        y, _ = self.rnn(f)
        return self.classifier(y).log_softmax(-1)


def build(classes: int = 6625, hidden: int = 128, seed: int = 0) -> CRNN:
    """The model with seeded random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = CRNN(classes, hidden)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def sample_images(n: int, width: int = 128, seed: int = 0) -> np.ndarray:
    """``n`` random grayscale lines [n, 1, 32, width] in [0, 1] (float32)."""
    return np.random.default_rng(seed).random((n, 1, HEIGHT, width), dtype=np.float32)


def export(model: CRNN, path: Path | None = None, width: int = 128) -> onnx.ModelProto:
    """Legacy exporter, opset 17, input ``image`` [N, 1, 32, width], output ``logprobs`` [N, T, C]; batch dynamic."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(sample_images(2, width)),), buf, input_names=["image"],
                          output_names=["logprobs"], dynamic_axes={"image": {0: "batch"}, "logprobs": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for crnn.onnx and crnn_calib.npz")
    parser.add_argument("--classes", type=int, default=6625, help="output classes, CTC blank included")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size per direction")
    parser.add_argument("--width", type=int, default=128, help="image width (T = width / 4)")
    parser.add_argument("--samples", type=int, default=51, help="calibration samples to write")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = build(args.classes, args.hidden)
    export(model, args.out / "crnn.onnx", args.width)
    np.savez(args.out / "crnn_calib.npz", image=sample_images(args.samples, args.width, seed=1))
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{args.out / 'crnn.onnx'}: {params / 1e6:.2f} M weights, {args.classes} classes; "
          f"{args.out / 'crnn_calib.npz'}: {args.samples} samples")


if __name__ == "__main__":
    main()
