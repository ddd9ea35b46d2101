"""Dataset: splitting, batching and taking samples."""

from __future__ import annotations

import numpy as np
import pytest

from smart_onnx.data import Dataset
from smart_onnx.errors import DataError


def _dataset(n: int, labels: bool = True) -> Dataset:
    ids = np.arange(n)
    return Dataset(
        {"x": ids.astype(np.float32)[:, None].repeat(2, 1), "ids": ids.copy()}, ids % 3 if labels else None, "mem"
    )


@pytest.mark.parametrize(("n", "fraction", "held"), [(10, 0.2, 2), (7, 0.5, 4), (2, 0.01, 1), (5, 0.99, 4)])
def test_split_is_disjoint_complete_and_sized(n: int, fraction: float, held: int) -> None:
    calib, holdout = _dataset(n).split(fraction, seed=3)
    assert len(holdout) == held and len(calib) == n - held
    a, b = calib.arrays["ids"].tolist(), holdout.arrays["ids"].tolist()
    assert sorted(a + b) == list(range(n)) and a == sorted(a) and b == sorted(b)
    assert calib.labels is not None and calib.labels.tolist() == [i % 3 for i in a]
    np.testing.assert_array_equal(holdout.arrays["x"][:, 0], b)


def test_split_is_deterministic_per_seed() -> None:
    data = _dataset(50)
    first = [part.arrays["ids"].tolist() for part in data.split(0.3, seed=1)]
    again = [part.arrays["ids"].tolist() for part in data.split(0.3, seed=1)]
    other = [part.arrays["ids"].tolist() for part in data.split(0.3, seed=2)]
    assert first == again and first != other


@pytest.mark.parametrize(
    ("n", "fraction", "match"), [(5, 0.0, "between 0 and 1"), (5, 1.0, "between 0 and 1"), (1, 0.5, "too few")]
)
def test_split_rejects(n: int, fraction: float, match: str) -> None:
    with pytest.raises(DataError, match=match):
        _dataset(n).split(fraction)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "size"), [(10, 3), (9, 3), (2, 5), (1, 1)])
def test_batches_cover_each_sample_once(n: int, size: int, shuffle: bool) -> None:
    batches = list(_dataset(n).batches(size, shuffle=shuffle, seed=4))
    seen = [i for batch in batches for i in batch.inputs["ids"].tolist()]
    assert sorted(seen) == list(range(n))
    assert [len(b.inputs["x"]) for b in batches] == [min(size, n - s) for s in range(0, n, size)]
    for batch in batches:
        assert batch.labels is not None and batch.labels.tolist() == [i % 3 for i in batch.inputs["ids"].tolist()]
        np.testing.assert_array_equal(batch.inputs["x"][:, 1], batch.inputs["ids"])


def test_shuffle_depends_on_seed_only() -> None:
    data = _dataset(30)

    def order(**kw: object) -> list[int]:
        return [i for inputs, _ in data.batches(4, **kw) for i in inputs["ids"].tolist()]

    assert order() == list(range(30))
    assert order(shuffle=True, seed=1) == order(shuffle=True, seed=1) != order(shuffle=True, seed=2)


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_of_the_batches_are_every_nth_batch(shuffle: bool) -> None:
    data = _dataset(11)
    whole = [b.inputs["ids"].tolist() for b in data.batches(3, shuffle=shuffle, seed=5)]
    parts = [[b.inputs["ids"].tolist() for b in data.batches(3, shuffle=shuffle, seed=5, shard=(i, 3))]
             for i in range(3)]
    assert parts == [whole[0::3], whole[1::3], whole[2::3]]


def test_drop_last_and_unlabelled_batches() -> None:
    batches = list(_dataset(10, labels=False).batches(4, drop_last=True))
    assert [len(b.inputs["ids"]) for b in batches] == [4, 4] and all(b.labels is None for b in batches)


@pytest.mark.parametrize(("n", "expected"), [(3, [0, 1, 2]), (100, list(range(8)))])
def test_take(n: int, expected: list[int]) -> None:
    part = _dataset(8).take(n)
    assert part.arrays["ids"].tolist() == expected and part.labels is not None and len(part.labels) == len(expected)


@pytest.mark.parametrize(
    ("call", "match"), [(lambda d: d.take(0), "at least 1"), (lambda d: list(d.batches(0)), "at least 1")]
)
def test_bad_sizes(call, match: str) -> None:
    with pytest.raises(DataError, match=match):
        call(_dataset(4))


@pytest.mark.parametrize(
    ("arrays", "labels", "match"),
    [
        ({"a": np.zeros(2), "b": np.zeros(3)}, None, "a: 2, b: 3"),
        ({"a": np.zeros(2)}, np.zeros(1), "a: 2, label: 1"),
        ({}, None, "no input arrays"),
    ],
)
def test_inconsistent_dataset(arrays: dict, labels: np.ndarray | None, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Dataset(arrays, labels, "mem")


def test_describe() -> None:
    assert _dataset(6).describe() == "6 samples from mem: x [6, 2] float32, ids [6] int64; 3 label classes"
