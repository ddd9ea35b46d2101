"""Checks and casts of in-memory arrays against model inputs (dataset_from_arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.data import dataset_from_arrays
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

IMAGE = InputSpec("image", ("batch", 3, 4, 4), np.dtype(np.float32))
IDS = InputSpec("ids", ("batch", "seq"), np.dtype(np.int64))


def _images(n: int = 2, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3, 4, 4)).astype(dtype)


@pytest.mark.parametrize(
    ("array", "dtype"),
    [
        (_images(dtype=np.float64), np.float32),
        (np.arange(2 * 48).reshape(2, 3, 4, 4).astype(np.int32), np.float32),
        (np.ones((2, 3, 4, 4), np.uint8), np.float32),
        (_images(), np.float16),
    ],
)
def test_safe_casts_to_input_dtype(array: np.ndarray, dtype: type) -> None:
    spec = InputSpec("image", IMAGE.shape, np.dtype(dtype))
    data = dataset_from_arrays({"image": array}, [spec])
    assert data.arrays["image"].dtype == dtype
    np.testing.assert_allclose(data.arrays["image"], array.astype(dtype))


def test_whole_floats_feed_an_integer_input() -> None:
    data = dataset_from_arrays({"ids": np.array([[1.0, 2.0, 3.0]])}, [IDS])
    assert data.arrays["ids"].dtype == np.int64
    assert data.arrays["ids"].tolist() == [[1, 2, 3]]


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (3, 100)])
def test_symbolic_dims_accept_any_size(shape: tuple[int, int]) -> None:
    data = dataset_from_arrays({"ids": np.zeros(shape, np.int64)}, [IDS])
    assert data.arrays["ids"].shape == shape


def test_sample_axis_is_free_even_when_the_model_fixes_batch() -> None:
    spec = InputSpec("x", (1, 3), np.dtype(np.float32))
    assert len(dataset_from_arrays({"x": np.zeros((9, 3))}, [spec])) == 9


def test_arrays_follow_model_input_order_and_labels_cast_to_int64() -> None:
    data = dataset_from_arrays(
        {"ids": np.zeros((2, 5), np.int64), "image": _images(), "label": np.array([1.0, 0.0])}, [IMAGE, IDS]
    )
    assert data.input_names == ["image", "ids"]
    assert data.labels is not None and data.labels.dtype == np.int64 and data.labels.tolist() == [1, 0]


def test_input_called_label_is_an_input_not_labels() -> None:
    spec = InputSpec("label", ("n",), np.dtype(np.int64))
    data = dataset_from_arrays({"label": np.array([3, 4])}, [spec])
    assert data.labels is None and data.arrays["label"].tolist() == [3, 4]


@pytest.mark.parametrize(
    ("arrays", "specs", "match"),
    [
        ({"image": _images(), "extra": _images()}, [IMAGE], r"arrays \['extra', 'image'\].*inputs are \['image'\]"),
        ({"ids": np.zeros((2, 3), np.int64)}, [IMAGE, IDS], r"arrays \['ids'\].*inputs are \['image', 'ids'\]"),
        ({"image": np.zeros((3, 4, 4), np.float32)}, [IMAGE], r"'image'.*\[3, 4, 4\].*rank 4"),
        ({"image": np.zeros((2, 1, 4, 4), np.float32)}, [IMAGE], r"'image'.*\[2, 1, 4, 4\].*axis 1 must be 3"),
        ({"image": np.zeros((0, 3, 4, 4), np.float32)}, [IMAGE], r"'image'.*no samples"),
        ({"ids": np.array([[1.5, 2.0]])}, [IDS], r"'ids'.*1 non-integer values.*int64"),
        ({"ids": np.array([[2**40]])}, [InputSpec("ids", ("n", "s"), np.dtype(np.int32))], r"'ids'.*range.*int32"),
        ({"ids": np.array([[-1]])}, [InputSpec("ids", ("n", "s"), np.dtype(np.uint8))], r"'ids'.*range.*uint8"),
        ({"ids": np.array([["a"]])}, [IDS], r"'ids'.*dtype <U1.*int64"),
        ({"image": _images() * np.nan}, [IMAGE], r"'image'.*96 NaN or infinite values"),
        ({"ids": np.array([[np.inf, 1.0]])}, [IDS], r"'ids'.*1 NaN or infinite"),
        (
            {"image": _images(dtype=np.float64) * 1e300},
            [InputSpec("image", IMAGE.shape, np.dtype(np.float16))],
            r"overflow.*float16",
        ),
        ({"f": np.array([[2]])}, [InputSpec("f", ("n", 1), np.dtype(bool))], r"'f'.*other than 0 and 1.*bool"),
        ({"s": np.array([1.0])}, [InputSpec("s", (), np.dtype(np.float32))], r"'s'.*scalar \(rank 0\)"),
        ({"image": _images(2), "ids": np.zeros((3, 5), np.int64)}, [IMAGE, IDS], r"image: 2, ids: 3"),
        ({"image": _images(2), "label": np.array([0, 1, 1])}, [IMAGE], r"labels.*\[3\], expected \[2\]"),
        ({"image": _images(2), "label": np.array([[0], [1]])}, [IMAGE], r"labels.*\[2, 1\]"),
        ({"image": _images(2), "label": np.array([0.5, 1.0])}, [IMAGE], r"labels.*non-integer"),
        ({"image": _images(2), "label": np.array(["a", "b"])}, [IMAGE], r"labels.*dtype <U1"),
        ({"image": _images(2), "label": np.array([0, -1])}, [IMAGE], r"labels.*negative"),
    ],
)
def test_mismatches_raise_one_sentence(arrays: dict, specs: list[InputSpec], match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        dataset_from_arrays(arrays, specs, source="calib.npz")
    message = str(info.value)
    assert "calib.npz" in message and "\n" not in message


def test_bool_input_accepts_zero_one_ints() -> None:
    data = dataset_from_arrays({"f": np.array([[0], [1]])}, [InputSpec("f", ("n", 1), np.dtype(bool))])
    assert data.arrays["f"].dtype == bool and data.arrays["f"].ravel().tolist() == [False, True]


def test_labels_given_twice_is_an_error() -> None:
    with pytest.raises(DataError, match="also given separately"):
        dataset_from_arrays({"image": _images(), "label": np.array([0, 1])}, [IMAGE], labels=np.array([1, 0]))
