"""Memory-mapped calibration data: .npy and uncompressed .npz read by rows, resident memory bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from smart_onnx.data import Dataset, load_dataset, write_npz
from smart_onnx.data._mapped import Joined, Rows, is_lazy
from smart_onnx.model import InputSpec
from smart_onnx.search.loader import BatchReader, Draw

X = InputSpec("x", ("N", 3), np.dtype(np.float32))


def _x(n: int) -> np.ndarray:
    return np.arange(3 * n, dtype=np.float32).reshape(n, 3)


def test_uncompressed_npz_is_mapped_and_split_copies_nothing(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "c.npz", {"x": _x(20)}, labels=np.arange(20) % 3)
    data = load_dataset(path, [X])
    assert isinstance(data.arrays["x"], np.memmap)
    calib, hold = data.split(0.25, seed=1)
    assert isinstance(calib.arrays["x"], Rows) and is_lazy(hold.arrays["x"])
    eager = _x(20)
    order = np.random.default_rng(1).permutation(20)
    np.testing.assert_array_equal(np.asarray(hold.arrays["x"]), eager[np.sort(order[:5])])
    batches = list(calib.batches(4))
    assert all(type(b.inputs["x"]) is np.ndarray for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.inputs["x"] for b in batches]), eager[np.sort(order[5:])])
    assert calib.labels is not None and calib.labels.tolist() == (np.sort(order[5:]) % 3).tolist()


def test_npy_is_mapped_and_compressed_npz_is_inflated_to_a_mapped_spill_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _x(6))
    assert isinstance(load_dataset(tmp_path / "x.npy", [X]).arrays["x"], np.memmap)
    np.savez_compressed(tmp_path / "z.npz", x=_x(6), label=np.arange(6) % 2)
    data = load_dataset(tmp_path / "z.npz", [X])
    assert is_lazy(data.arrays["x"])
    np.testing.assert_array_equal(data.arrays["x"], _x(6))
    assert data.labels is not None and data.labels.tolist() == [0, 1, 0, 1, 0, 1]
    np.savez_compressed(tmp_path / "f.npz", x=np.asfortranarray(_x(6)))  # column-major survives the spill
    np.testing.assert_array_equal(load_dataset(tmp_path / "f.npz", [X]).arrays["x"], _x(6))


def _batches(data, **kw) -> tuple[np.ndarray, list[int] | None]:
    batches = list(data.batches(4, **kw))
    labels = None if data.labels is None else [i for b in batches for i in b.labels.tolist()]
    return np.concatenate([b.inputs["x"] for b in batches]), labels


@pytest.mark.parametrize("kind", ["npy", "npz", "compressed npz"])
def test_a_folder_of_files_is_joined_unread_with_the_batches_of_the_whole_set(tmp_path: Path, kind: str) -> None:
    parts = [_x(5), _x(7) + 100, _x(4) + 200]
    whole = np.concatenate(parts)
    labels = [i % 3 for i in range(16)] if kind != "npy" else None
    starts = [0, 5, 12, 16]
    for i, part in enumerate(parts):
        if kind == "npy":
            np.save(tmp_path / f"{i}.npy", part)
        else:
            save = np.savez_compressed if kind == "compressed npz" else np.savez
            save(tmp_path / f"{i}.npz", x=part, label=np.asarray(labels[starts[i]:starts[i + 1]]))
    data = load_dataset(tmp_path, [X])
    assert isinstance(data.arrays["x"], Joined) and len(data) == 16
    eager = Dataset({"x": whole}, None if labels is None else np.asarray(labels))
    for kw in ({}, {"shuffle": True, "seed": 3}):
        got, want = _batches(data, **kw), _batches(eager, **kw)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1] == want[1]
    calib, hold = data.split(0.25, seed=2)
    assert is_lazy(calib.arrays["x"])
    np.testing.assert_array_equal(np.asarray(hold.arrays["x"]), np.asarray(eager.split(0.25, seed=2)[1].arrays["x"]))


def test_a_mapped_array_in_another_dtype_is_cast_in_memory(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", {"x": _x(5).astype(np.float64)})
    data = load_dataset(path, [X])
    assert data.arrays["x"].dtype == np.float32 and not is_lazy(data.arrays["x"])


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_reader_reads_draws_in_order(tmp_path: Path, workers: int) -> None:
    np.save(tmp_path / "x.npy", _x(12))
    data = load_dataset(tmp_path / "x.npy", [X])
    plan = [np.array([3, 1, 7]), np.array([0, 11]), np.array([5, 6, 2, 9])]
    reader = BatchReader(data.arrays, iter([Draw(p, np.arange(len(p)), p) for p in plan]), workers)
    for p in plan:
        draw, arrays = next(reader)
        assert np.array_equal(draw.batch, p)
        assert torch.equal(arrays["x"], torch.from_numpy(_x(12)[p]))


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_an_epoch_over_a_mapped_set_keeps_resident_memory_flat(tmp_path: Path) -> None:
    n, width = 4096, 4096  # 64 MiB of float32 samples
    spec = InputSpec("x", ("N", width), np.dtype(np.float32))
    rows = np.random.default_rng(0).standard_normal((256, width)).astype(np.float32)
    with open(tmp_path / "big.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n, width)})
        for _ in range(n // len(rows)):
            fh.write(rows.tobytes())
    del rows
    before = _rss()
    data = load_dataset(tmp_path / "big.npy", [spec])  # the finiteness check reads the whole file
    calib, hold = data.split(0.25)
    peak = _rss()
    for part in (calib, hold):
        for batch in part.batches(64):
            assert batch.inputs["x"].shape[1] == width
            peak = max(peak, _rss())
    assert peak - before < 24 * 2**20, f"{(peak - before) / 2**20:.0f} MiB resident for a 64 MiB set"


@pytest.mark.parametrize("shape", [("N", 3, 6, 8), ("N", 6, 8, 3)], ids=["nchw", "nhwc"])
def test_large_image_sets_decode_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape) -> None:
    from PIL import Image

    from smart_onnx.data import _images

    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    spec = InputSpec("pixels", shape, np.dtype(np.float32))
    eager = load_dataset(tmp_path, [spec], mean=[0.5], std=[0.25])
    monkeypatch.setattr(_images, "IMAGES_IN_MEMORY_BYTES", 0)
    lazy = load_dataset(tmp_path, [spec], mean=[0.5], std=[0.25])
    assert isinstance(lazy.arrays["pixels"], _images.ImageFiles) and lazy.arrays["pixels"].shape == (5, *shape[1:])
    calib, hold = lazy.split(0.4, seed=2)
    assert is_lazy(calib.arrays["pixels"])
    ref_calib, ref_hold = eager.split(0.4, seed=2)
    for got, want in ((calib, ref_calib), (hold, ref_hold)):
        np.testing.assert_array_equal(np.concatenate([b.inputs["pixels"] for b in got.batches(2)]),
                                      want.arrays["pixels"])
