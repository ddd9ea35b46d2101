"""Loading image folders into a single image input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smart_onnx.data import image_layout, load_dataset
from smart_onnx.errors import DataError
from smart_onnx.model import InputSpec

NCHW = InputSpec("pixels", ("N", 3, 6, 8), np.dtype(np.float32))
NHWC = InputSpec("pixels", ("N", 6, 8, 3), np.dtype(np.float32))


def _save(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> Path:
    """A solid-colour image of ``size`` (width, height); the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format={".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower()))
    return path


@pytest.mark.parametrize("name", ["a.png", "a.PNG", "a.jpg", "a.JPEG", "a.bmp"])
def test_each_image_format_decodes(tmp_path: Path, name: str) -> None:
    path = _save(tmp_path / name, (255, 0, 51))
    data = load_dataset(path, [NCHW])
    pixels = data.arrays["pixels"]
    assert pixels.shape == (1, 3, 6, 8) and pixels.dtype == np.float32
    # JPEG is lossy: compare channel means loosely.
    np.testing.assert_allclose(pixels.mean(axis=(0, 2, 3)), [1.0, 0.0, 0.2], atol=0.02)


@pytest.mark.parametrize(("spec", "axis"), [(NCHW, 1), (NHWC, 3)])
def test_layout_from_input_shape_and_normalisation(tmp_path: Path, spec: InputSpec, axis: int) -> None:
    _save(tmp_path / "img.png", (255, 0, 51), size=(20, 10))
    data = load_dataset(tmp_path, [spec], mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 0.1])
    pixels = data.arrays["pixels"]
    assert pixels.shape == (1, *spec.shape[1:])
    other = tuple(a for a in range(4) if a != axis)
    np.testing.assert_allclose(pixels.mean(axis=other), [1.0, -2.0, -3.0], atol=1e-5)


def test_grayscale_input_and_float16(tmp_path: Path) -> None:
    spec = InputSpec("gray", ("N", 1, 4, 4), np.dtype(np.float16))
    _save(tmp_path / "a.png", (255, 255, 255))
    data = load_dataset(tmp_path, [spec], mean=[0.5], std=[0.5])
    assert data.arrays["gray"].dtype == np.float16 and data.arrays["gray"].shape == (1, 1, 4, 4)
    np.testing.assert_allclose(data.arrays["gray"], 1.0)


def test_ambiguous_layout_is_nchw() -> None:
    layout = image_layout(InputSpec("x", ("N", 3, 5, 3), np.dtype(np.float32)))
    assert layout.channels_first and (layout.height, layout.width) == (5, 3)


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [(("N", 3, "H", "W"), (7, 9), (7, 9)), (("N", "H", "W", 3), 5, (5, 5)), (("N", 3, 6, 8), (6, 8), (6, 8))],
)
def test_image_size(shape: tuple, size: object, expected: tuple[int, int]) -> None:
    layout = image_layout(InputSpec("x", shape, np.dtype(np.float32)), size)
    assert (layout.height, layout.width) == expected


def test_symbolic_size_resizes_to_image_size(tmp_path: Path) -> None:
    spec = InputSpec("x", ("N", "H", "W", 3), np.dtype(np.float32))
    _save(tmp_path / "a.png", (0, 0, 0), size=(30, 30))
    assert load_dataset(tmp_path, [spec], image_size=(7, 9)).arrays["x"].shape == (1, 7, 9, 3)


@pytest.mark.parametrize(
    ("shape", "dtype", "size", "match"),
    [
        (("N", 3, "H", "W"), np.float32, None, "symbolic height or width; give the image size"),
        (("N", 3, 6, 8), np.float32, (6, 9), "fixes height x width, but an image size of 6x9"),
        (("N", 3, 6, 8), np.float32, (6, 0), "`image_size` must be"),
        (("N", 3, 6, 8), np.int64, None, "not an image input"),
        (("N", 6, 8), np.float32, None, "not an image input"),
        (("N", 4, 6, 8), np.float32, None, "no channel axis of 1 or 3"),
        (("N", "C", 6, 8), np.float32, None, "no channel axis of 1 or 3"),
    ],
)
def test_inputs_images_cannot_feed(shape: tuple, dtype: type, size: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        image_layout(InputSpec("x", shape, np.dtype(dtype)), size)


def test_non_image_input_via_load(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", (0, 0, 0))
    with pytest.raises(DataError, match=r"input 'ids' \(int64, \[N, 16\]\) is not an image input"):
        load_dataset(tmp_path, [InputSpec("ids", ("N", 16), np.dtype(np.int64))])


def test_images_for_a_multi_input_model(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", (0, 0, 0))
    other = InputSpec("scale", ("N", 1), np.dtype(np.float32))
    with pytest.raises(DataError, match=r"holds images.*inputs \['pixels', 'scale'\]"):
        load_dataset(tmp_path, [NCHW, other])


@pytest.mark.parametrize(
    ("option", "match"),
    [({"mean": [0.1, 0.2]}, "`mean` has 2 values, expected 1 or 3"), ({"std": [1.0, 0.0, 1.0]}, "`std` has a zero")],
)
def test_bad_normalisation(tmp_path: Path, option: dict, match: str) -> None:
    _save(tmp_path / "a.png", (0, 0, 0))
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path, [NCHW], **option)


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", (0, 0, 0))
    good = _save(tmp_path / "b.png", (0, 0, 0), size=(64, 64)).read_bytes()
    (tmp_path / "b.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "c.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"cannot decode image .*b.png"):
        load_dataset(tmp_path, [NCHW])
    with pytest.raises(DataError, match=r"cannot decode image .*c.jpg"):
        load_dataset(tmp_path / "c.jpg", [NCHW])


def test_class_subfolders_give_sorted_index_labels(tmp_path: Path) -> None:
    _save(tmp_path / "dog" / "2.png", (0, 0, 255))
    _save(tmp_path / "cat" / "1.png", (255, 0, 0))
    _save(tmp_path / "cat" / "0.jpg", (255, 0, 0))
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "zebra" / "z.bmp", (0, 255, 0))
    data = load_dataset(tmp_path, [NCHW])
    assert data.labels is not None and data.labels.tolist() == [0, 0, 1, 3]
    np.testing.assert_allclose(data.arrays["pixels"][:, 0].mean(axis=(1, 2)), [1, 1, 0, 0], atol=0.02)


def test_class_subfolders_must_hold_images(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    np.save(tmp_path / "cat" / "a.npy", np.zeros((1, 3, 6, 8)))
    with pytest.raises(DataError, match="npy files in subfolders"):
        load_dataset(tmp_path, [NCHW])


def test_images_mixed_with_arrays(tmp_path: Path) -> None:
    _save(tmp_path / "a.png", (0, 0, 0))
    np.save(tmp_path / "b.npy", np.zeros((1, 3, 6, 8)))
    with pytest.raises(DataError, match="mixes image and npy files"):
        load_dataset(tmp_path, [NCHW])


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grayscale_keeps_its_range(tmp_path: Path, channels: int) -> None:
    values = np.full((6, 8), 32768, np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    spec = InputSpec("x", ("N", channels, 6, 8), np.dtype(np.float32))
    pixels = load_dataset(tmp_path, [spec]).arrays["x"]
    assert pixels.shape == (1, channels, 6, 8)
    np.testing.assert_allclose(pixels, 32768 / 65535, rtol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "P", "L"])
def test_other_8_bit_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    Image.new("RGB", (8, 6), (255, 255, 255)).convert(mode).save(tmp_path / "a.png")
    np.testing.assert_allclose(load_dataset(tmp_path, [NCHW]).arrays["pixels"], 1.0)
