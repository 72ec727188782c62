"""The keyword index scores as an independent BM25 does (rank_bm25, with Lucene's idf, on the
same tokens), with filters applied before ranking, and stays right after deletes."""

from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from akasha_ray.vectors.keyword_index import K1, B, KeywordIndex, idf, tokens


class LuceneBM25(BM25Okapi):
    """rank_bm25's BM25 (term frequencies, lengths, average length its own) with Lucene's idf,
    log(1 + (N - n + 0.5) / (n + 0.5)), which Akasha uses (never negative)."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        self.idf = {word: float(idf(self.corpus_size, freq)) for word, freq in nd.items()}


WORDS = [
    "apple",
    "banana",
    "cherry",
    "dates",
    "running",
    "runner",
    "runs",
    "hiking",
    "tennis",
    "paris",
    "london",
    "cat",
    "dog",
]


def corpus(n: int, seed: int = 7) -> list[tuple[str, str, int, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(1, 12)), p=None)
        rows.append((f"s{i % 3}/m{i}", f"s{i % 3}", i * 1000, "The " + " ".join(words) + "."))
    return rows


def peer_top(rows, query: str, k: int) -> list[tuple[str, float]]:
    peer = LuceneBM25([tokens(text) for *_, text in rows], k1=K1, b=B)
    scores = peer.get_scores(tokens(query))
    ranked = sorted(
        ((key, s) for (key, *_), s in zip(rows, scores, strict=True) if s > 0),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return ranked[:k]


def index_of(rows) -> KeywordIndex:
    index = KeywordIndex()
    keys, systems, times, texts = zip(*rows, strict=True)
    index.add(keys, systems, np.array(times), texts)
    return index


def assert_same(found: tuple[list[str], np.ndarray], expected: list[tuple[str, float]]) -> None:
    keys, scores = found
    assert keys == [key for key, _ in expected]
    np.testing.assert_allclose(scores, [s for _, s in expected], rtol=1e-9)


@pytest.mark.parametrize("query", ["running in Paris", "apple apple dog", "tennis", "cats"])
def test_scores_match_rank_bm25(query: str) -> None:
    rows = corpus(300)
    assert_same(index_of(rows).search(query, 10), peer_top(rows, query, 10))


def test_filters_apply_before_ranking() -> None:
    """System and time filters: the statistics (N, df, average length) are those of the
    rows that pass, as if the index held only them."""
    rows = corpus(300)
    index = index_of(rows)
    kept = [r for r in rows if r[1] in ("s0", "s2") and 50_000 <= r[2] <= 250_000]
    found = index.search("runner hiking london", 10, ["s0", "s2"], 50_000, 250_000)
    assert_same(found, peer_top(kept, "runner hiking london", 10))
    keys = [r[0] for r in rows[:40]]
    found = index.search("banana", 5, only_keys=keys)
    assert_same(found, peer_top(rows[:40], "banana", 5))
    assert index.search("banana", 5, ["nobody"])[0] == []


def test_deletes_and_compaction_keep_it_exact() -> None:
    rows = corpus(3000)
    index = index_of(rows)
    gone = {r[0] for r in rows[::2]}  # past the compaction threshold
    for key in gone:
        assert index.remove(key)
    assert not index.remove(rows[0][0])
    left = [r for r in rows if r[0] not in gone]
    assert len(index) == len(left)
    assert_same(index.search("cherry dates", 10), peer_top(left, "cherry dates", 10))
    index.add(["s0/new"], ["s0"], [1], ["cherry cherry dates dates"])
    assert index.search("cherry dates", 1)[0] == ["s0/new"]


def test_stemming_and_stop_words() -> None:
    assert tokens("The Runners were RUNNING!") == ["runner", "were", "run"]
    index = index_of([("a", "s", 0, "she runs daily"), ("b", "s", 0, "the cat")])
    assert index.search("running", 5)[0] == ["a"]
    assert index.search("the of", 5)[0] == []


@pytest.mark.parametrize("query", ["running in Paris", "apple apple dog", "tennis", "cats"])
def test_joined_indexes_rank_as_one_corpus(query: str) -> None:
    """The cold archive's way: an index per partition, joined into one per search stack and
    scored with the statistics of all the rows that pass, as rank_bm25 over them. A key two
    partitions hold (a crash mid-rewrite) counts once, from the first; a deleted row not at all."""
    rows = corpus(400, seed=11)
    parts = [rows[:150], rows[150:170] + rows[:5], rows[170:]]
    indexes = [index_of(part) for part in parts]
    assert indexes[2].remove(rows[170][0])
    joined, taken = KeywordIndex.joined(indexes)
    everything = [row for part in parts for row in part]
    assert len(joined) == len(rows) - 1
    assert [everything[i][0] for i in taken] == [r[0] for r in rows if r != rows[170]]
    start, end = 40_000, 330_000
    passing = [r for r in rows if start <= r[2] <= end and r != rows[170]]
    assert_same(joined.search(query, 10, None, start, end), peer_top(passing, query, 10))
    only_s1 = [r for r in passing if r[1] == "s1"]
    assert_same(joined.search(query, 10, ["s1"], start, end), peer_top(only_s1, query, 10))
    assert joined.search("the of", 10)[0] == []
    found, scores = joined.search_rows(query, 3)
    assert joined.search(query, 3)[0] == [everything[taken[r]][0] for r in found]
    assert len(scores) == len(found)


def test_a_hot_shard_keeps_its_keyword_index_in_step(tmp_path) -> None:
    """Insert, delete, undo of a failed write, and a reopen (the index rebuilt from DuckDB)."""
    from datetime import UTC, datetime

    from akasha_ray.models import MemoryIn
    from akasha_ray.records import build_batch
    from akasha_ray.vectors.hot_shard import HotShard

    now = datetime.now(UTC)
    texts = ["a zebra at the zoo", "zebra crossing", "the quartz clock", "zebra zebra stripes"]
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        MemoryIn(id=f"m{i}", system_id=f"s{i % 2}", conversation_id="c", content=t, created_at=now)
        for i, t in enumerate(texts)
    ]
    batch = build_batch(memories, vectors, model="m", model_revision="r", now=now)
    shard = HotShard(tmp_path / "hot.duckdb")
    shard.insert(batch.slice(0, 3))
    shard.insert(batch.slice(3), write_id="w1")
    rows = list(zip(*[batch.column(c).to_pylist() for c in ("id", "content")], strict=True))
    corpus_rows = [(f"s{i % 2}/{i_}", f"s{i % 2}", 0, t) for i, (i_, t) in enumerate(rows)]

    def found(text, systems=None):
        return [
            (h["system_id"], h["id"], h["bm25"]) for h in shard.search_keywords(text, 10, systems)
        ]

    expected = peer_top(corpus_rows, "zebra", 10)
    hits = found("zebra")
    assert [f"{system}/{i}" for system, i, _ in hits] == [key for key, _ in expected]
    assert [score for *_, score in hits] == pytest.approx([score for _, score in expected])
    assert [h[1] for h in found("zebra", ["s0"])] == ["m0"]
    assert shard.undo(["s1/m3"], "w1") == ["s1/m3"]
    assert shard.delete("s1/m1")
    assert [h[1] for h in found("zebra")] == ["m0"]
    shard.close()
    shard = HotShard(tmp_path / "hot.duckdb")
    assert [h[1] for h in found("zebra")] == ["m0"]
    assert [h[1] for h in found("clocks")] == ["m2"]
    shard.close()
