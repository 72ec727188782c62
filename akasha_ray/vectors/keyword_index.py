"""Keyword search: an exact in-memory BM25 index, kept beside the vector index of a tier.

Why this and not a library (measured on the LoCoMo dev conversations, README "Search modes"):
DuckDB's FTS index is rebuilt whole on every change (a hot shard changes with every ingest);
an inverted index of numpy postings per shard is rebuilt from the DuckDB file on open like
`FlatIndex`, updated in step with each committed insert and delete, and scores exactly.

Scoring is BM25 (k1 1.2, b 0.75) with Lucene's idf, log(1 + (N - n + 0.5) / (n + 0.5)), which is
never negative. N, n and the average length are those of the rows that pass the filters (system,
time, keys): a system's scores depend on its own memories only. Tokens: lower-cased alphanumeric
runs, a small stop list, Snowball English stems (stemming took recall@10 of BM25 from 0.58 to
0.61 on that benchmark). A query token that repeats counts each time (as rank_bm25 does).
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import snowballstemmer

K1 = 1.2
B = 0.75
_TOKEN = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
        "i",
        "you",
        "he",
        "she",
        "we",
        "me",
        "my",
        "your",
        "our",
        "do",
        "did",
        "does",
        "what",
        "when",
        "where",
        "who",
        "why",
        "how",
        "which",
    ]
)
_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def tokens(text: str) -> list[str]:
    """The terms of a text, in order, as the index and its queries see them."""
    return [_stem(w) for w in _TOKEN.findall(text.lower()) if w not in STOP_WORDS]


def idf(n_docs: int | np.ndarray, doc_freq: int | np.ndarray) -> np.ndarray:
    return np.log1p((n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class KeywordIndex:
    """Rows of (key, system, time, term counts) with an inverted index of numpy-readable
    postings; deleted rows are marked dead, then compacted."""

    def __init__(self) -> None:
        self._postings: dict[str, tuple[array, array]] = {}  # term -> (rows, counts)
        self._length = array("i")
        self._system = array("i")
        self._time_us = array("q")
        self._alive = array("b")
        self._keys: list[str] = []
        self._row_of: dict[str, int] = {}
        self._system_code: dict[str, int] = {}
        self._dead = 0

    def __len__(self) -> int:
        return len(self._keys) - self._dead

    def __contains__(self, key: str) -> bool:
        return key in self._row_of

    def add(
        self,
        keys: Sequence[str],
        system_ids: Sequence[str],
        time_us: Sequence[int] | np.ndarray,
        texts: Sequence[str],
    ) -> None:
        """Append rows; keys already held are skipped (the caller adds committed rows only)."""
        for key, system_id, moment, text in zip(keys, system_ids, time_us, texts, strict=True):
            if key in self._row_of:
                continue
            row = len(self._keys)
            terms = tokens(text)
            for term, count in Counter(terms).items():
                rows, counts = self._postings.setdefault(term, (array("i"), array("i")))
                rows.append(row)
                counts.append(count)
            self._length.append(len(terms))
            self._system.append(self._system_code.setdefault(system_id, len(self._system_code)))
            self._time_us.append(int(moment))
            self._alive.append(1)
            self._keys.append(key)
            self._row_of[key] = row

    def remove(self, key: str) -> bool:
        row = self._row_of.pop(key, None)
        if row is None:
            return False
        self._alive[row] = 0
        self._dead += 1
        if self._dead > 1024 and self._dead > len(self._keys) // 4:
            self._compact()
        return True

    def search(
        self,
        query: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        only_keys: Sequence[str] | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Top-k keys by BM25 over the rows that pass the filters, best first (ties by key);
        only rows holding a query term are returned."""
        rows, scores = self.search_rows(query, k, system_ids, start_us, end_us, only_keys)
        return [self._keys[row] for row in rows.tolist()], scores

    def search_rows(
        self,
        query: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        only_keys: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `search`, the rows (in the order `add` appended them) instead of their keys."""
        terms = tokens(query)
        mask = self._mask(system_ids, start_us, end_us, only_keys)
        if k <= 0 or not terms or mask is None:
            return np.empty(0, np.int64), np.empty(0)
        n_docs, length, doc_freqs = self._corpus(terms, mask)
        if n_docs == 0:
            return np.empty(0, np.int64), np.empty(0)
        rows, scores = self._scores(terms, mask, n_docs, length / n_docs, doc_freqs)
        ranked = best(scores, lambda i: self._keys[rows[i]], k)
        return rows[ranked], scores[ranked]

    @classmethod
    def joined(cls, indexes: Sequence[KeywordIndex]) -> tuple[KeywordIndex, np.ndarray]:
        """One index of the live rows of these (a key several hold is kept from the first), so
        that they rank as one corpus in one pass; and per row of it, that row's position among
        all their rows, counted in order (the first index's rows first, dead ones included)."""
        out = cls()
        taken: list[np.ndarray] = []
        chunks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        offset = 0
        for index in indexes:
            new_row = np.full(len(index._keys), -1, dtype=np.int32)
            for row, key in enumerate(index._keys):
                if index._alive[row] and key not in out._row_of:
                    new_row[row] = out._row_of[key] = len(out._keys)
                    out._keys.append(key)
            kept = np.flatnonzero(new_row >= 0)
            taken.append(kept + offset)
            offset += len(index._keys)
            codes = np.zeros(max(len(index._system_code), 1), dtype=np.int32)
            for system_id, code in index._system_code.items():
                codes[code] = out._system_code.setdefault(system_id, len(out._system_code))
            out._length.extend(np.frombuffer(index._length, dtype=np.int32)[kept].tolist())
            out._time_us.extend(np.frombuffer(index._time_us, dtype=np.int64)[kept].tolist())
            out._system.extend(codes[np.frombuffer(index._system, dtype=np.int32)[kept]].tolist())
            for term, (rows, counts) in index._postings.items():
                moved = new_row[np.frombuffer(rows, dtype=np.int32)]
                there = moved >= 0
                if there.any():
                    counts_np = np.frombuffer(counts, dtype=np.int32)[there]
                    chunks.setdefault(term, []).append((moved[there], counts_np))
        out._alive = array("b", bytes([1]) * len(out._keys))
        out._postings = {
            term: (
                array("i", np.concatenate([r for r, _ in parts]).tobytes()),
                array("i", np.concatenate([c for _, c in parts]).tobytes()),
            )
            for term, parts in chunks.items()
        }
        return out, np.concatenate(taken) if taken else np.empty(0, np.int64)

    def _corpus(self, terms: Sequence[str], mask: np.ndarray) -> tuple[int, int, list[int]]:
        """Of the rows `mask` keeps: how many, their total length in terms, and per term how
        many hold it (BM25's N, average length and n)."""
        lengths = np.frombuffer(self._length, dtype=np.int32)
        doc_freqs = []
        for term in terms:
            posting = self._postings.get(term)
            rows = np.frombuffer(posting[0], dtype=np.int32) if posting else np.empty(0, np.int32)
            doc_freqs.append(int(np.count_nonzero(mask[rows])))
        return int(np.count_nonzero(mask)), int(lengths[mask].sum()), doc_freqs

    def _scores(
        self,
        terms: Sequence[str],
        mask: np.ndarray,
        n_docs: int,
        avg_length: float,
        doc_freqs: Sequence[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows `mask` keeps that hold a query term, and their BM25 over that corpus."""
        lengths = np.frombuffer(self._length, dtype=np.int32)
        total = np.zeros(len(self._keys))
        touched = np.zeros(len(self._keys), dtype=bool)
        for term, doc_freq in zip(terms, doc_freqs, strict=True):
            posting = self._postings.get(term)
            if posting is None or doc_freq == 0:
                continue
            rows = np.frombuffer(posting[0], dtype=np.int32)
            counts = np.frombuffer(posting[1], dtype=np.int32).astype(np.float64)
            kept = mask[rows]
            rows, counts = rows[kept], counts[kept]
            norm = K1 * (1 - B + B * lengths[rows] / avg_length)
            total[rows] += idf(n_docs, doc_freq) * counts * (K1 + 1) / (counts + norm)
            touched[rows] = True
        rows = np.flatnonzero(touched)
        return rows, total[rows]

    def _mask(self, system_ids, start_us, end_us, only_keys) -> np.ndarray | None:
        n = len(self._keys)
        if n == 0:
            return None
        mask = np.frombuffer(self._alive, dtype=np.int8).astype(bool)
        if only_keys is not None:
            hit = np.zeros(n, dtype=bool)
            hit[[self._row_of[key] for key in only_keys if key in self._row_of]] = True
            mask &= hit
        if system_ids is not None:
            codes = [self._system_code[s] for s in system_ids if s in self._system_code]
            mask &= np.isin(np.frombuffer(self._system, dtype=np.int32), codes)
        times = np.frombuffer(self._time_us, dtype=np.int64)
        if start_us is not None:
            mask &= times >= start_us
        if end_us is not None:
            mask &= times <= end_us
        return mask

    def _compact(self) -> None:
        alive = np.frombuffer(self._alive, dtype=np.int8).astype(bool)
        new_row = np.cumsum(alive) - 1
        postings: dict[str, tuple[array, array]] = {}
        for term, (rows, counts) in self._postings.items():
            rows_np = np.frombuffer(rows, dtype=np.int32)
            kept = alive[rows_np]
            if kept.any():
                postings[term] = (
                    array("i", new_row[rows_np[kept]].astype(np.int32).tobytes()),
                    array("i", np.frombuffer(counts, dtype=np.int32)[kept].tobytes()),
                )
        keep = np.flatnonzero(alive)
        self._postings = postings
        self._length = array("i", np.frombuffer(self._length, dtype=np.int32)[keep].tobytes())
        self._system = array("i", np.frombuffer(self._system, dtype=np.int32)[keep].tobytes())
        self._time_us = array("q", np.frombuffer(self._time_us, dtype=np.int64)[keep].tobytes())
        self._alive = array("b", bytes([1]) * len(keep))
        self._keys = [self._keys[r] for r in keep]
        self._row_of = {key: row for row, key in enumerate(self._keys)}
        self._dead = 0


def best(scores: np.ndarray, key_of: Callable[[int], str], k: int) -> list[int]:
    """Positions of the k best scores, best first, ties by key (`key_of(position)`, asked only
    of the rows that tie or beat the k-th)."""
    order = np.arange(len(scores))
    if len(order) > k:  # keep every row scoring at least the k-th: ties still rank by key
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        order = order[scores >= kth]
    return sorted(order.tolist(), key=lambda i: (-scores[i], key_of(i)))[:k]
