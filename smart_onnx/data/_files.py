"""Find the data files under a path and read numpy files.

A path is one file or a folder. A folder's files are sorted by name. A folder
holding no data files itself but subfolders of images is a class-per-subfolder
layout (``calib/cat/*.png``, ``calib/dog/*.png``): the label of an image is the
index of its subfolder among the sorted subfolder names (empty subfolders count, so
indices stay aligned with the class list). Names starting with ``.`` are skipped.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smart_onnx.data._mapped import map_npy, map_npz, spill_npz
from smart_onnx.errors import DataError

__all__ = ["IMAGE", "NPY", "NPZ", "Listing", "kind_of", "list_data", "read_npy", "read_npz"]

log = logging.getLogger(__name__)

NPZ, NPY, IMAGE = "npz", "npy", "image"
_KINDS = {".npz": NPZ, ".npy": NPY, ".png": IMAGE, ".jpg": IMAGE, ".jpeg": IMAGE, ".bmp": IMAGE}
_SUPPORTED = ", ".join(_KINDS)


@dataclass(frozen=True)
class Listing:
    """The data files found under a path.

    Attributes:
        kind: ``npz``, ``npy`` or ``image``.
        files: the files, sorted by name (by class folder, then name, in class layout).
        labels: one class index per file in class-subfolder layout, else None.
        classes: the class subfolder names (index = label), else None.
    """

    kind: str
    files: tuple[Path, ...]
    labels: tuple[int, ...] | None = None
    classes: tuple[str, ...] | None = None


def kind_of(path: Path) -> str | None:
    """The data kind of a file from its extension (case-insensitive), or None."""
    return _KINDS.get(path.suffix.lower())


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _data_files(folder: Path) -> list[Path]:
    files = [p for p in _visible(folder) if p.is_file()]
    supported = [p for p in files if kind_of(p)]
    if skipped := len(files) - len(supported):
        log.warning("ignoring %d files in %s that are not %s", skipped, folder, _SUPPORTED)
    return supported


def _single_kind(files: list[Path], folder: Path) -> str:
    kinds = sorted({kind_of(p) or "" for p in files})
    if len(kinds) > 1:
        raise DataError(f"{folder} mixes {' and '.join(kinds)} files; use one kind of data per folder")
    return kinds[0]


def list_data(path: str | Path) -> Listing:
    """The data files at ``path``.

    Raises:
        DataError: the path does not exist, is a file of an unsupported type, or a
            folder with no supported files, with mixed kinds, or with class
            subfolders that hold anything but images.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"calibration data {path} does not exist")
    if path.is_file():
        if (kind := kind_of(path)) is None:
            raise DataError(f"{path} has an unsupported file type {path.suffix!r}; supported: {_SUPPORTED}")
        return Listing(kind, (path,))
    if files := _data_files(path):
        return Listing(_single_kind(files, path), tuple(files))
    classes = [p for p in _visible(path) if p.is_dir()]
    per_class = [_data_files(folder) for folder in classes]
    files = [f for group in per_class for f in group]
    if not files:
        raise DataError(f"{path} holds no data files ({_SUPPORTED}), neither directly nor in subfolders")
    kind = _single_kind(files, path)
    if kind != IMAGE:
        raise DataError(f"{path} has {kind} files in subfolders; subfolders (one per class) are for images only")
    for folder, group in zip(classes, per_class):
        if not group:
            log.warning("class folder %s holds no images; its label index is kept", folder)
    labels = tuple(index for index, group in enumerate(per_class) for _ in group)
    return Listing(IMAGE, tuple(files), labels, tuple(p.name for p in classes))


def _load(path: Path) -> object:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as numpy data ({type(e).__name__}: {_one_line(e)})") from e


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` archive (pickled objects refused), memory-mapped (compressed ones from a spill file).

    Raises:
        DataError: the file is unreadable, corrupt or not an npz archive.
    """
    for mapping in (map_npz, spill_npz):  # stored members mapped in place, compressed ones inflated to a spill file
        try:
            mapped = mapping(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            mapped = None  # read below, which names the problem
        if mapped is not None:
            return mapped
    archive = _load(path)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is not an npz archive (np.load read a single array)")
    with archive:
        try:
            return {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {path} as an npz archive ({type(e).__name__}: {_one_line(e)})") from e


def read_npy(path: Path) -> np.ndarray:
    """The array of an ``.npy`` file (pickled objects refused), memory-mapped.

    Raises:
        DataError: the file is unreadable, corrupt or not an npy array.
    """
    try:
        mapped = map_npy(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        mapped = None  # unreadable: read below, which names the problem
    if isinstance(mapped, np.ndarray):
        return mapped
    if mapped is not None and hasattr(mapped, "close"):
        mapped.close()  # an npz archive under an .npy name: refused below
    array = _load(path)
    if not isinstance(array, np.ndarray):
        if isinstance(array, np.lib.npyio.NpzFile):
            array.close()
        raise DataError(f"{path} is not an npy array (it holds an npz archive)")
    return array
