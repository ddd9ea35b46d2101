"""Load calibration/evaluation data for a model, and write npz calibration sets."""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from smart_onnx._atomic import atomic_output
from smart_onnx.data import _images
from smart_onnx.data._conform import LABEL_KEY, conform_array, conform_labels, conform_mapping
from smart_onnx.data._dataset import Dataset, concat
from smart_onnx.data._files import IMAGE, NPY, NPZ, Listing, list_data, read_npy, read_npz
from smart_onnx.data._images import ImageFiles, image_layout, load_images
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

__all__ = ["dataset_from_arrays", "load_dataset", "write_npz"]

log = logging.getLogger(__name__)


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray],
    inputs: Sequence[InputSpec],
    labels: np.ndarray | None = None,
    source: str = "<arrays>",
) -> Dataset:
    """A Dataset from in-memory arrays, checked and cast like a loaded npz file.

    Args:
        arrays: one array per graph input, samples along axis 0; a ``label`` entry
            is taken as labels when no input is called ``label``.
        inputs: the model's runtime inputs (``OnnxModel.inputs``).
        labels: one integer class per sample, or None.
        source: a description used in error messages.

    Raises:
        DataError: the arrays do not match the inputs (see `load_dataset`).
    """
    checked, checked_labels = conform_mapping(arrays, inputs, labels, source)
    return Dataset(checked, checked_labels, source)


def _load_npz(listing: Listing, inputs: Sequence[InputSpec], source: str) -> Dataset:
    return concat([dataset_from_arrays(read_npz(f), inputs, source=str(f)) for f in listing.files], source)


def _load_npy(listing: Listing, inputs: Sequence[InputSpec], source: str) -> Dataset:
    if len(inputs) != 1:
        raise DataError(
            f"{listing.files[0]} is an .npy array, which can only feed a single-input model, but this model has "
            f"inputs {[s.name for s in inputs]}; use .npz files keyed by input name"
        )
    spec = inputs[0]
    parts = [Dataset({spec.name: conform_array(read_npy(f), spec, str(f))}, None, str(f)) for f in listing.files]
    return concat(parts, source)


def _load_images(
    listing: Listing,
    inputs: Sequence[InputSpec],
    source: str,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    image_size: int | Sequence[int] | None,
) -> Dataset:
    if len(inputs) != 1:
        raise DataError(
            f"{source} holds images, which can only feed a single-input model, but this model has inputs "
            f"{[s.name for s in inputs]}; use .npz files keyed by input name"
        )
    spec = inputs[0]
    layout = image_layout(spec, image_size)
    decoded = len(listing.files) * layout.channels * layout.height * layout.width * 4
    if decoded > _images.IMAGES_IN_MEMORY_BYTES:  # decoded batch by batch as they are read
        log.info("%d images from %s (%d MiB decoded): decoded as batches read them", len(listing.files), source,
                 decoded // 2**20)
        array = ImageFiles(listing.files, layout, mean, std, spec.dtype)
    else:
        array = conform_array(load_images(listing.files, layout, mean, std), spec, source)
    labels = None if listing.labels is None else conform_labels(np.asarray(listing.labels), len(array), source)
    if listing.classes is not None:
        log.info("labels from %d class folders in %s: %s", len(listing.classes), source, ", ".join(listing.classes))
    return Dataset({spec.name: array}, labels, source)


def load_dataset(
    path: str | os.PathLike[str],
    inputs: Sequence[InputSpec],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_size: int | Sequence[int] | None = None,
) -> Dataset:
    """Load calibration or evaluation data for a model.

    ``path`` is a file or a folder of one kind of file (sorted by name,
    concatenated along the sample axis; numpy files are memory-mapped, see `smart_onnx.data`):

    * ``*.npz``: arrays keyed by graph-input name, samples along axis 0; an
      optional ``label`` array (one integer class per sample) when no graph input
      is called ``label``. All files need the same keys.
    * ``*.npy``: one array, samples along axis 0; single-input models only.
    * images (``png``, ``jpg``, ``jpeg``, ``bmp``, any case): single float rank-4
      input only, laid out as NCHW or NHWC from its shape, resized to its H x W,
      scaled to [0, 1] and normalised with ``mean``/``std`` (see `smart_onnx.data`).
      Class subfolders (``calib/cat/*.png``, ``calib/dog/*.png``)
      give labels: the index of the subfolder among the sorted subfolder names.

    Arrays are cast to each input's dtype. Axis 0 may hold any number of samples;
    the other axes must match the model's fixed dims (symbolic dims accept any size).

    Args:
        path: a data file or folder.
        inputs: the model's runtime inputs (``OnnxModel.inputs``).
        mean: per-channel mean subtracted from images scaled to [0, 1] (1 or C values).
        std: per-channel std images are divided by after the mean (1 or C values).
        image_size: ``(height, width)`` (or one int) to resize images to; needed when
            the image input's H or W is symbolic.

    Returns:
        The dataset, arrays in the model's input order.

    Raises:
        DataError: one sentence naming the file and input at fault, for: a missing
            path, no or mixed supported files, npz keys that differ from the input
            names, wrong rank or fixed dims, values the input's dtype cannot hold
            (fractions for integer inputs), NaN/inf, differing sample counts, bad
            labels, images or npy for a model they cannot feed, unreadable files,
            and image options given for non-image data.
    """
    if not inputs:
        raise DataError(f"the model has no runtime inputs, so there is nothing to feed the data in {path} to")
    listing = list_data(path)
    source = str(path)
    given = tuple(n for n, v in (("mean", mean), ("std", std), ("image_size", image_size)) if v is not None)
    if listing.kind != IMAGE and given:
        names = " and ".join(f"`{n}`" for n in given)
        raise DataError(f"{names} apply to images, but {source} holds {listing.kind} files", parameters=given)
    if listing.kind == NPZ:
        dataset = _load_npz(listing, inputs, source)
    elif listing.kind == NPY:
        dataset = _load_npy(listing, inputs, source)
    else:
        dataset = _load_images(listing, inputs, source, mean, std, image_size)
    log.info("loaded %s", dataset.describe())
    return dataset


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], labels: np.ndarray | None = None) -> Path:
    """Write arrays keyed by input name (and labels) as an npz calibration set, atomically.

    The file is written to a temporary file in the same folder and renamed, so a
    reader never sees a partial file; missing parent folders are created. Any key is allowed (``np.savez`` would reject
    names such as ``file`` or ``allow_pickle``).

    Returns:
        The path written.

    Raises:
        DataError: the path does not end in ``.npz``, an array is called ``label``
            while labels are given, an array holds Python objects, or the arrays
            hold different numbers of samples.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataError(f"{path} must end in .npz so that load_dataset finds it")
    entries = {name: np.asarray(a) for name, a in arrays.items()}
    if labels is not None:
        if LABEL_KEY in entries:
            raise DataError(f"cannot write labels to {path}: an array is already called {LABEL_KEY!r}")
        entries[LABEL_KEY] = np.asarray(labels)
    if objects := [name for name, a in entries.items() if a.dtype.hasobject]:
        raise DataError(f"cannot write {objects} to {path}: object arrays need pickling, which loading refuses")
    if len({len(a) if a.ndim else -1 for a in entries.values()}) > 1:
        counts = ", ".join(f"{k}: {a.shape[0] if a.ndim else 'scalar'}" for k, a in entries.items())
        raise DataError(f"arrays for {path} hold different numbers of samples ({counts})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in entries.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    log.info("wrote %s (%s)", path, ", ".join(f"{k} {list(a.shape)}" for k, a in entries.items()))
    return path
