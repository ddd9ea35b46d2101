"""Decode images into a model's single image input.

Layout is read from the input's shape: NCHW when dim 1 is 1 or 3, NHWC when the
last dim is 1 or 3; when both hold (e.g. ``[N, 3, 224, 3]``) NCHW is assumed. Each
image is converted to RGB (grayscale when the input has one channel; alpha is
dropped), resized to the input's H x W with bilinear filtering (no crop, aspect
ratio not kept), scaled to [0, 1] (8-bit by 255, 16-bit grayscale by 65535), then
normalised per channel as ``(x - mean) / std``. EXIF orientation is not applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from smart_onnx.data._conform import format_shape
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

__all__ = ["IMAGES_IN_MEMORY_BYTES", "ImageFiles", "ImageLayout", "image_layout", "load_images"]

log = logging.getLogger(__name__)

# Image sets that decode to more than this are decoded batch by batch as they are read (ImageFiles).
IMAGES_IN_MEMORY_BYTES = 256 * 2**20

_CHANNELS = (1, 3)
# 16-bit grayscale PNGs open in these modes (Pillow has no 16-bit RGB).
_WIDE_GRAY = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class ImageLayout:
    """Where an image input keeps its channels, and the size images are resized to."""

    channels_first: bool
    channels: int
    height: int
    width: int


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise DataError(f"`image_size` must be one positive int or (height, width), got {image_size!r}",
                        parameters=("image_size",))
    return size  # type: ignore[return-value]


def image_layout(spec: InputSpec, image_size: int | Sequence[int] | None = None) -> ImageLayout:
    """The layout of ``spec`` as an image input.

    Args:
        spec: the model's only input.
        image_size: ``(height, width)`` or one int for both; required when the
            input's H or W is symbolic, and must agree with fixed ones.

    Raises:
        DataError: the input is not a float rank-4 tensor with 1 or 3 channels at
            axis 1 or 3, or H x W is unknown or contradicts ``image_size``.
    """
    what = f"input {spec.name!r} ({spec.dtype}, {format_shape(spec.shape)})"
    if not spec.is_float() or spec.rank != 4:
        raise DataError(f"{what} is not an image input: images feed a float input of rank 4 (NCHW or NHWC)")
    first = spec.shape[1] in _CHANNELS
    if not first and spec.shape[3] not in _CHANNELS:
        raise DataError(f"{what} has no channel axis of 1 or 3 at axis 1 (NCHW) or 3 (NHWC), so images cannot feed it")
    channels = int(spec.shape[1] if first else spec.shape[3])
    dims = spec.shape[2:4] if first else spec.shape[1:3]
    size = _size(image_size)
    fixed = all(isinstance(d, int) and d > 0 for d in dims)
    if size is None and not fixed:
        raise DataError(f"{what} has a symbolic height or width; give the image size (`image_size`, height x width)",
                        parameters=("image_size",))
    if size is not None and any(isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, size)):
        raise DataError(f"{what} fixes height x width, but an image size of {size[0]}x{size[1]} was given")
    height, width = size if size is not None else (int(dims[0]), int(dims[1]))
    return ImageLayout(first, channels, height, width)


def _per_channel(values: Sequence[float] | None, default: float, channels: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(channels, default, np.float32)
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.size not in (1, channels):
        raise DataError(f"`{name}` has {array.size} values, expected 1 or {channels} (one per channel)",
                        parameters=(name,))
    return np.broadcast_to(array, (channels,))


def _pixels(image: Image.Image, layout: ImageLayout) -> np.ndarray:
    size = (layout.width, layout.height)
    if image.mode in _WIDE_GRAY:
        # convert("L"/"RGB") would clip 16-bit values at 255, so scale to [0, 1] first.
        gray = Image.fromarray(np.asarray(image, dtype=np.float32) / 65535.0)
        pixels = np.asarray(gray.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
        return np.repeat(pixels[..., None], layout.channels, axis=2)
    image = image.convert("L" if layout.channels == 1 else "RGB").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32).reshape(layout.height, layout.width, layout.channels) / 255.0


def _decode(path: Path, layout: ImageLayout) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return _pixels(image, layout)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path} ({type(e).__name__}: {' '.join(str(e).split())})") from e


def _normalisation(mean: Sequence[float] | None, std: Sequence[float] | None,
                   layout: ImageLayout) -> tuple[np.ndarray, np.ndarray]:
    mean_c = _per_channel(mean, 0.0, layout.channels, "mean")
    std_c = _per_channel(std, 1.0, layout.channels, "std")
    if not np.all(std_c != 0):
        raise DataError(f"`std` has a zero value ({list(std_c)}), which cannot normalise", parameters=("std",))
    return mean_c, std_c


def _decode_all(files: Sequence[Path], layout: ImageLayout, mean_c: np.ndarray, std_c: np.ndarray) -> np.ndarray:
    out = np.empty((len(files), layout.height, layout.width, layout.channels), np.float32)
    for i, path in enumerate(files):
        out[i] = _decode(path, layout)
    out = (out - mean_c) / std_c
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if layout.channels_first else out


def load_images(
    files: Sequence[Path],
    layout: ImageLayout,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Decode, resize and normalise ``files`` into one float32 array in ``layout``.

    All images are decoded up front (about ``4 * C * H * W`` bytes each); :class:`ImageFiles`
    decodes them as they are read.

    Raises:
        DataError: a file cannot be decoded, ``mean``/``std`` has the wrong length,
            or ``std`` has a zero.
    """
    mean_c, std_c = _normalisation(mean, std, layout)
    out = _decode_all(files, layout, mean_c, std_c)
    log.debug("decoded %d images to %dx%dx%d", len(files), layout.height, layout.width, layout.channels)
    return out


class ImageFiles:
    """Images decoded when their rows are read: an array-like ``[N, ...]`` in ``layout``, cast to ``dtype``.

    What a dataset does with an array works (``len``, ``shape``, ``dtype``, ``ndim``,
    ``images[rows]``, ``np.asarray``), and a dataset split selects rows without decoding.
    Each file's header is read here, so a file that is not an image is refused at load;
    a file whose pixel data is corrupt is found when its batch is read.

    Raises:
        DataError: as :func:`load_images`, for the headers and the normalisation.
    """

    reads_on_access = True  # see smart_onnx.data._mapped.is_lazy

    def __init__(self, files: Sequence[Path], layout: ImageLayout, mean: Sequence[float] | None,
                 std: Sequence[float] | None, dtype: np.dtype) -> None:
        self.files, self.layout, self.dtype = list(files), layout, np.dtype(dtype)
        self.mean, self.std = _normalisation(mean, std, layout)
        for path in self.files:
            try:
                with Image.open(path):
                    pass
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
                raise DataError(f"cannot decode image {path} ({type(e).__name__}: {' '.join(str(e).split())})") from e
        hwc = (layout.height, layout.width, layout.channels)
        self.shape = (len(self.files), *((hwc[2], hwc[0], hwc[1]) if layout.channels_first else hwc))

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows: object) -> np.ndarray:
        index = np.arange(len(self.files))[rows]
        picked = [self.files[i] for i in np.atleast_1d(index)]
        out = _decode_all(picked, self.layout, self.mean, self.std).astype(self.dtype, copy=False)
        return out[0] if np.ndim(index) == 0 else out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)
