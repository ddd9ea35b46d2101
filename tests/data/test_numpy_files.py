"""Loading npz/npy files and folders, and writing npz calibration sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from smart_onnx.data import load_dataset, write_npz
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

X = InputSpec("x", ("N", 3), np.dtype(np.float32))
MASK = InputSpec("mask", ("N", "seq"), np.dtype(np.int64))


def _x(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + 3 * n, dtype=np.float64).reshape(n, 3)


def test_npz_file_with_labels(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "calib.npz", {"x": _x(4), "mask": np.ones((4, 6))}, labels=np.array([0, 1, 2, 1]))
    data = load_dataset(path, [X, MASK])
    assert len(data) == 4 and data.source == str(path)
    assert data.arrays["x"].dtype == np.float32 and data.arrays["mask"].dtype == np.int64
    np.testing.assert_array_equal(data.arrays["x"], _x(4))
    assert data.labels is not None and data.labels.tolist() == [0, 1, 2, 1]


def test_npz_folder_concatenates_in_name_order(tmp_path: Path) -> None:
    write_npz(tmp_path / "b.npz", {"x": _x(3, start=100)}, labels=np.array([1, 1, 1]))
    write_npz(tmp_path / "a.npz", {"x": _x(2)}, labels=np.array([0, 0]))
    (tmp_path / "README.txt").write_text("not data")
    data = load_dataset(tmp_path, [X])
    np.testing.assert_array_equal(data.arrays["x"], np.concatenate([_x(2), _x(3, start=100)]))
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("suffix", [".npy", ".NPY"])
def test_npy_files_feed_a_single_input(tmp_path: Path, suffix: str) -> None:
    np.save(tmp_path / "0.npy", _x(2))
    os.replace(tmp_path / "0.npy", tmp_path / f"0{suffix}")
    np.save(tmp_path / "1.npy", _x(1, start=50).astype(np.int32))
    data = load_dataset(tmp_path, [X])
    assert data.labels is None and data.arrays["x"].dtype == np.float32
    np.testing.assert_array_equal(data.arrays["x"], np.concatenate([_x(2), _x(1, start=50)]))
    assert len(load_dataset(tmp_path / "1.npy", [X])) == 1


def test_write_npz_is_atomic_and_accepts_any_key(tmp_path: Path) -> None:
    spec = InputSpec("file", ("N",), np.dtype(np.float32))
    path = write_npz(tmp_path / "set.npz", {"file": np.ones(2), "allow_pickle": np.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.npz"]
    with np.load(path) as archive:
        assert sorted(archive.files) == ["allow_pickle", "file"]
    with pytest.raises(DataError, match=r"arrays \['allow_pickle', 'file'\].*inputs are \['file'\]"):
        load_dataset(path, [spec])


@pytest.mark.parametrize(
    ("arrays", "labels", "name", "match"),
    [
        ({"x": np.ones(2)}, None, "set.npy", r"must end in \.npz"),
        ({"label": np.ones(2)}, np.zeros(2), "set.npz", "already called 'label'"),
        ({"x": np.ones(2)}, np.zeros(3), "set.npz", "x: 2, label: 3"),
        ({"x": np.array([{}, 1], dtype=object)}, None, "set.npz", r"cannot write \['x'\].*pickling"),
    ],
)
def test_write_npz_rejects(tmp_path: Path, arrays: dict, labels: np.ndarray | None, name: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        write_npz(tmp_path / name, arrays, labels)
    assert list(tmp_path.iterdir()) == []


def test_write_npz_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_npz(tmp_path / "set.npz", {"x": _x(1)})

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError, match="disk full"):
        write_npz(tmp_path / "set.npz", {"x": _x(5)})
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]
    assert len(load_dataset(tmp_path / "set.npz", [X])) == 1


def _corrupt_npz(tmp_path: Path) -> Path:
    path = write_npz(tmp_path / "bad.npz", {"x": _x(200)})
    path.write_bytes(path.read_bytes()[:300])
    return path


def _corrupt_npy(tmp_path: Path) -> Path:
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    return path


def _pickled_npy(tmp_path: Path) -> Path:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return path


def _npz_named_npy(tmp_path: Path) -> Path:
    write_npz(tmp_path / "a.npz", {"x": _x(1)})
    return (tmp_path / "a.npz").rename(tmp_path / "a.npy")


def _npy_named_npz(tmp_path: Path) -> Path:
    np.save(tmp_path / "a.npy", _x(1))
    return (tmp_path / "a.npy").rename(tmp_path / "a.npz")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_corrupt_npz, "cannot read .*bad.npz"),
        (_corrupt_npy, "cannot read .*bad.npy"),
        (_pickled_npy, "cannot read .*obj.npy"),
        (_npz_named_npy, "a.npy is not an npy array"),
        (_npy_named_npz, "a.npz is not an npz archive"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, make, match: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError, match=match):
        load_dataset(path, [X])


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope does not exist"):
        load_dataset(tmp_path / "nope", [X])


@pytest.mark.parametrize("files", [[], ["notes.txt"], [".hidden.npz"]])
def test_folder_without_data(tmp_path: Path, files: list[str]) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match="holds no data files"):
        load_dataset(tmp_path, [X])


def test_unsupported_single_file(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load_dataset(tmp_path / "data.csv", [X])


def test_mixed_kinds_in_a_folder(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x": _x(1)})
    np.save(tmp_path / "b.npy", _x(1))
    with pytest.raises(DataError, match="mixes npy and npz files"):
        load_dataset(tmp_path, [X])


def test_npz_files_with_different_keys(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x": _x(1)}, labels=np.array([0]))
    write_npz(tmp_path / "b.npz", {"x": _x(1)})
    with pytest.raises(DataError, match=r"b.npz has arrays \['x'\] but .*a.npz has \['label', 'x'\]"):
        load_dataset(tmp_path, [X])


def test_npz_files_with_different_symbolic_dims(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"mask": np.ones((1, 4))})
    write_npz(tmp_path / "b.npz", {"mask": np.ones((1, 5))})
    with pytest.raises(DataError, match=r"'mask'.*\[5\] in .*b.npz but \[4\] in .*a.npz"):
        load_dataset(tmp_path, [MASK])


def test_npz_errors_name_the_file(tmp_path: Path) -> None:
    write_npz(tmp_path / "a.npz", {"x": _x(1)})
    write_npz(tmp_path / "b.npz", {"x": np.ones((1, 4))})
    with pytest.raises(DataError, match=r"'x' in .*b.npz has shape \[1, 4\].*axis 1 must be 3"):
        load_dataset(tmp_path, [X])


def test_npy_for_a_multi_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _x(1))
    with pytest.raises(DataError, match=r"a.npy is an .npy array.*inputs \['x', 'mask'\]"):
        load_dataset(tmp_path, [X, MASK])


@pytest.mark.parametrize("option", [{"mean": [0.5]}, {"std": [0.2]}, {"image_size": 32}])
def test_image_options_with_array_data(tmp_path: Path, option: dict) -> None:
    path = write_npz(tmp_path / "a.npz", {"x": _x(1)})
    with pytest.raises(DataError, match="apply to images, but .* holds npz files"):
        load_dataset(path, [X], **option)


def test_model_without_inputs(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "a.npz", {"x": _x(1)})
    with pytest.raises(DataError, match="no runtime inputs"):
        load_dataset(path, [])
