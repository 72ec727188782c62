import numpy as np
import pytest

from akasha_ray.vectors.flat_index import FlatIndex


def _unit(rng, n, dim=384):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(x, q, k, keep):
    scores = x @ q
    scores[~keep] = -np.inf
    order = np.argsort(-scores, kind="stable")[: min(k, int(keep.sum()))]
    return order


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    n = 5000
    x = _unit(rng, n)
    systems = np.array([f"s{i % 13}" for i in range(n)])
    times = rng.integers(0, 10_000, n)
    index = FlatIndex(capacity=16)  # small capacity: exercises growth
    for lo in range(0, n, 700):
        hi = min(n, lo + 700)
        index.add([f"m{i}" for i in range(lo, hi)], systems[lo:hi].tolist(), times[lo:hi], x[lo:hi])
    return rng, x, systems, times, index


@pytest.mark.parametrize(
    ("system_filter", "start", "end", "k"),
    [
        (None, None, None, 10),
        (["s3"], None, None, 10),  # a gather (few rows)
        ([f"s{i}" for i in range(10)], None, None, 25),  # a mask (most rows)
        (None, 2000, 7000, 10),
        (["s1", "s2"], 100, 900, 1000),  # k larger than the matches
        (None, -5, 10**6, 10),  # a range covering every row: no mask at all
    ],
)
def test_search_equals_brute_force(data, system_filter, start, end, k):
    rng, x, systems, times, index = data
    keep = np.ones(len(x), dtype=bool)
    if system_filter:
        keep &= np.isin(systems, system_filter)
    if start is not None:
        keep &= (times >= start) & (times <= end)
    for q in _unit(rng, 5):
        ids, scores = index.search(q, k, system_filter, start, end)
        expected = _brute(x, q, k, keep)
        assert ids == [f"m{i}" for i in expected]
        assert np.allclose(scores, (x @ q)[expected], atol=1e-6)
        assert list(scores) == sorted(scores, reverse=True)


def test_unknown_system_and_empty_index():
    assert FlatIndex().search(np.ones(384, dtype=np.float32), 5) == ([], pytest.approx([]))
    index = FlatIndex()
    index.add(["a"], ["s"], np.array([1]), np.eye(384, dtype=np.float32)[:1])
    ids, _ = index.search(np.eye(384, dtype=np.float32)[0], 5, ["other"])
    assert ids == []


def test_remove_and_compaction_keep_answers_exact(data):
    rng, x, _, _, index = data
    removed = set(range(0, len(x), 2))  # enough to trigger compaction
    for i in removed:
        assert index.remove(f"m{i}")
    assert not index.remove("m0")
    assert len(index) == len(x) - len(removed)
    keep = np.array([i not in removed for i in range(len(x))])
    q = _unit(rng, 1)[0]
    ids, _ = index.search(q, 20)
    assert ids == [f"m{i}" for i in _brute(x, q, 20, keep)]
    index.add(["again"], ["s1"], np.array([5]), q[None, :])
    assert index.search(q, 1)[0] == ["again"]


def test_only_keys_filter(data):
    rng, x, _, _, index = data
    q = _unit(rng, 1)[0]
    wanted = [f"m{i}" for i in (3, 30, 300, 3000)] + ["not-there"]
    ids, _ = index.search(q, 10, only_keys=wanted)
    expected = sorted((i for i in (3, 30, 300, 3000)), key=lambda i: -(x[i] @ q))
    assert ids == [f"m{i}" for i in expected]
    assert index.search(q, 10, only_keys=["not-there"])[0] == []
    assert index.search(q, 10, system_ids=["s0"], only_keys=["m3"])[0] == []  # m3 is s3
