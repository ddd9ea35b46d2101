"""Calibration arrays read from disk as batches need them, not loaded whole.

``.npy`` files and the uncompressed members of ``.npz`` archives (``np.savez`` and
:func:`smart_onnx.data.write_npz` store members uncompressed) are memory-mapped: a batch
reads only its rows. :class:`Rows` is a selection of a mapped array's rows that stays
unread until indexed, so splitting a dataset (calibration / validation / evaluation)
copies no samples. Compressed members (``np.savez_compressed``) cannot be mapped where they
lie: :func:`spill_npz` inflates them once into an unlinked temporary file and maps that.

Pages of a mapped file a process has read count in its resident set until the kernel needs
them back, so an epoch over a mapped set would grow RSS to the file's size. :func:`read_rows`
copies the rows it reads and then drops the mapping's pages from the process
(``MADV_DONTNEED``; they stay in the page cache, so reading them again is a minor fault).
"""

from __future__ import annotations

import mmap
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Joined", "Rows", "is_lazy", "map_npy", "map_npz", "read_rows", "release", "spill_npz"]

_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header: 30 bytes, then name and extra field


class Rows:
    """Rows ``index`` of ``base`` (a memory-mapped array), read when indexed or converted.

    Supports what datasets do with their arrays: ``len``, ``shape``, ``dtype``, ``ndim``,
    ``rows[idx]`` (an in-memory array of the selected rows), ``np.asarray(rows)``.
    """

    def __init__(self, base: np.ndarray, index: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(index, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_rows(self.base, self.index[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = read_rows(self.base, self.index)
        return out if dtype is None else out.astype(dtype, copy=False)

    def select(self, index: np.ndarray) -> Rows:
        return Rows(self.base, self.index[index])


class Joined:
    """Arrays (memory-mapped ones, or others read on access) joined along axis 0 without reading them.

    What :func:`~smart_onnx.data._dataset.concat` returns for a folder of such files: ``joined[rows]``
    reads each row from the part that holds it. The parts share a dtype and per-sample shape.
    """

    reads_on_access = True  # see is_lazy

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0, *(len(p) for p in parts)])
        self.dtype = np.dtype(parts[0].dtype)
        self.shape = (int(self.starts[-1]), *parts[0].shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        index = np.asarray(rows) if isinstance(rows, (np.ndarray, list)) else np.arange(len(self))[rows]
        flat = np.atleast_1d(index)
        out = np.empty((len(flat), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self.starts, flat, side="right") - 1
        for p in np.unique(part):
            picked = part == p
            out[picked] = read_rows(self.parts[p], flat[picked] - self.starts[p])
        return out[0] if np.ndim(index) == 0 else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


def release(array: Any) -> None:
    """Drop the pages of ``array``'s file mapping from this process (no-op for an array in memory)."""
    mapping = getattr(array.base if isinstance(array, Rows) else array, "_mmap", None)
    if isinstance(mapping, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapping.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a closed mapping; nothing held
            pass


def read_rows(array: Any, rows: Any) -> np.ndarray:
    """``array[rows]`` as an array in memory; a memory-mapped ``array`` gives its pages back after the copy."""
    if isinstance(array, Rows):
        return array[rows]
    out = np.array(array[rows], copy=True) if isinstance(array, np.memmap) else np.asarray(array[rows])
    release(array)
    return out.view(np.ndarray) if isinstance(out, np.memmap) else out


def is_lazy(array: Any) -> bool:
    """Whether ``array`` reads its rows from disk (a memory map, images decoded on access, or :class:`Rows`)."""
    if isinstance(array, Rows) or getattr(array, "reads_on_access", False):  # Rows, or images decoded when read
        return True
    return isinstance(array, np.memmap) and getattr(array, "_mmap", None) is not None


def map_npy(path: Path) -> Any:
    """The array of an ``.npy`` file, memory-mapped read-only (what ``np.load`` read, if not an array)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _member_offset(fh: Any, info: zipfile.ZipInfo) -> int:
    fh.seek(info.header_offset)
    fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for member {info.filename}")
    name_len, extra_len = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_len + extra_len


def _npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """(shape, fortran order, dtype) of the ``.npy`` stream at ``fh``; None for a version or dtype not mapped."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    return None if dtype.hasobject else (shape, fortran, dtype)


def _mapped(file: Any, header: tuple[tuple[int, ...], bool, np.dtype], offset: int) -> np.ndarray:
    shape, fortran, dtype = header
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def map_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Every member of an ``.npz`` archive memory-mapped read-only; None when one cannot be (compressed, objects)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                return None
            fh.seek(_member_offset(fh, info))
            if (header := _npy_header(fh)) is None:
                return None
            arrays[info.filename[: -len(".npy")]] = _mapped(path, header, fh.tell())
    return arrays


def spill_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Every member of a compressed ``.npz`` archive decompressed to a temporary file and memory-mapped.

    A deflated member cannot be read from the middle, so it is inflated once, in 1 MiB pieces,
    into an unlinked temporary file (the disk holds the decompressed data while the arrays live;
    memory holds what batches read). None when a member is not an array the mapping can hold
    (objects, another file): the caller reads the archive as numpy does, which names the problem.
    """
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                return None
            with archive.open(info) as member:
                if (header := _npy_header(member)) is None:
                    return None
                with tempfile.TemporaryFile(prefix="smart_onnx_npz_") as spill:  # the mapping keeps it alive
                    shutil.copyfileobj(member, spill, 2**20)
                    spill.flush()
                    arrays[info.filename[: -len(".npy")]] = _mapped(spill, header, 0)
    return arrays
