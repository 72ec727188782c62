"""An exact in-memory vector index: a float32 matrix scanned with one BLAS product.

Hot shards must give the same top-k as brute force, so there is no approximation here; the speed
comes from contiguous storage, filters applied as masks or row gathers, and argpartition for top-k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from akasha_ray.embedding_dim import DIM

_GATHER_BELOW = 0.25  # when filters keep fewer rows than this fraction, gather instead of masking


class FlatIndex:
    """Rows of (key, system, time, unit vector); deleted rows are marked dead, then compacted.

    A row's key is the memory's `identity.memory_key` (a plain string to this index)."""

    def __init__(self, dim: int = DIM, capacity: int = 1024) -> None:
        self.dim = dim
        self._vectors = np.empty((capacity, dim), dtype=np.float32)
        self._system = np.empty(capacity, dtype=np.int32)
        self._time_us = np.empty(capacity, dtype=np.int64)
        self._alive = np.zeros(capacity, dtype=bool)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._system_code: dict[str, int] = {}
        self._size = 0
        self._dead = 0
        self._min_us = np.iinfo(np.int64).max  # bounds of every time ever added: a range that
        self._max_us = np.iinfo(np.int64).min  # covers them needs no time mask

    def __len__(self) -> int:
        return self._size - self._dead

    def __contains__(self, memory_id: str) -> bool:
        return memory_id in self._row_of

    def add(
        self,
        ids: Sequence[str],
        system_ids: Sequence[str],
        time_us: np.ndarray,
        vectors: np.ndarray,
    ) -> None:
        """Append rows; the caller guarantees the ids are new and vectors are unit length."""
        n = len(ids)
        if n == 0:
            return
        self._reserve(self._size + n)
        end = self._size + n
        self._vectors[self._size : end] = vectors
        self._system[self._size : end] = [self._code(s) for s in system_ids]
        self._time_us[self._size : end] = time_us
        self._alive[self._size : end] = True
        self._min_us = min(self._min_us, int(np.min(time_us)))
        self._max_us = max(self._max_us, int(np.max(time_us)))
        for offset, memory_id in enumerate(ids):
            self._row_of[memory_id] = self._size + offset
        self._ids.extend(ids)
        self._size = end

    def remove(self, memory_id: str) -> bool:
        row = self._row_of.pop(memory_id, None)
        if row is None:
            return False
        self._alive[row] = False
        self._dead += 1
        if self._dead > 1024 and self._dead > self._size // 4:
            self._compact()
        return True

    def keys_before(self, time_us: int, limit: int) -> list[str]:
        n = self._size
        rows = np.flatnonzero(self._alive[:n] & (self._time_us[:n] < time_us))
        rows = rows[np.argsort(self._time_us[rows], kind="stable")[:limit]]
        return [self._ids[r] for r in rows]

    def bounds(self, system_id: str | None = None) -> tuple[int, int | None, int | None]:
        """(rows, least time, greatest time) of one system's live rows (None: every row)."""
        n = self._size
        live = self._alive[:n]
        if system_id is not None:
            code = self._system_code.get(system_id)
            if code is None:
                return 0, None, None
            live = live & (self._system[:n] == code)
        times = self._time_us[:n][live]
        if len(times) == 0:
            return 0, None, None
        return len(times), int(times.min()), int(times.max())

    def per_system(self) -> dict[str, tuple[int, int, int]]:
        """(rows, least time, greatest time) of every system with live rows, in one pass."""
        n = self._size
        live = self._alive[:n]
        codes, times = self._system[:n][live], self._time_us[:n][live]
        if len(codes) == 0:
            return {}
        size = len(self._system_code)
        counts = np.bincount(codes, minlength=size)
        least = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
        greatest = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(least, codes, times)
        np.maximum.at(greatest, codes, times)
        return {
            system: (int(counts[c]), int(least[c]), int(greatest[c]))
            for system, c in self._system_code.items()
            if counts[c]
        }

    def search(
        self,
        query: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        only_keys: Sequence[str] | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Top-k keys by cosine (the query must be unit length), best first, with their scores."""
        n = self._size
        mask = self._mask(n, system_ids, start_us, end_us, only_keys)
        if mask is None:  # nothing can match
            return [], np.empty(0, dtype=np.float32)
        query = np.asarray(query, dtype=np.float32)
        if mask is True:
            rows, scores = None, self._vectors[:n] @ query
        else:
            kept = int(np.count_nonzero(mask))
            if kept == 0:
                return [], np.empty(0, dtype=np.float32)
            if kept < n * _GATHER_BELOW:
                rows = np.flatnonzero(mask)
                scores = self._vectors[rows] @ query
            else:
                rows, scores = None, self._vectors[:n] @ query
                scores[~mask] = -np.inf
            k = min(k, kept)
        k = min(k, len(scores))
        m = len(scores)
        # Partition for the k largest in place of negating: no extra copy of the scores.
        top = np.argpartition(scores, m - k)[m - k :] if k < m else np.arange(m)
        top = top[np.argsort(-scores[top], kind="stable")]
        picked = top if rows is None else rows[top]
        return [self._ids[r] for r in picked], scores[top]

    def _mask(self, n, system_ids, start_us, end_us, only_keys):
        """True for 'every row', None for 'no row', else a boolean row mask."""
        if n == 0:
            return None
        mask: np.ndarray | bool = True if self._dead == 0 else self._alive[:n]
        if only_keys is not None:
            rows = [self._row_of[i] for i in only_keys if i in self._row_of]
            if not rows:
                return None
            hit = np.zeros(n, dtype=bool)
            hit[rows] = True
            mask = hit if mask is True else mask & hit
        if system_ids is not None:
            codes = [self._system_code[s] for s in system_ids if s in self._system_code]
            if not codes:
                return None
            column = self._system[:n]
            hit = column == codes[0] if len(codes) == 1 else np.isin(column, codes)
            mask = hit if mask is True else mask & hit
        if start_us is not None and start_us > self._min_us:
            hit = self._time_us[:n] >= start_us
            mask = hit if mask is True else mask & hit
        if end_us is not None and end_us < self._max_us:
            hit = self._time_us[:n] <= end_us
            mask = hit if mask is True else mask & hit
        return mask

    def _code(self, system_id: str) -> int:
        return self._system_code.setdefault(system_id, len(self._system_code))

    def _reserve(self, needed: int) -> None:
        capacity = len(self._alive)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2)
        self._vectors = _grow(self._vectors, capacity)
        self._system = _grow(self._system, capacity)
        self._time_us = _grow(self._time_us, capacity)
        alive = np.zeros(capacity, dtype=bool)
        alive[: self._size] = self._alive[: self._size]
        self._alive = alive

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[: self._size])
        self._vectors[: len(keep)] = self._vectors[keep]
        self._system[: len(keep)] = self._system[keep]
        self._time_us[: len(keep)] = self._time_us[keep]
        self._alive[: len(keep)] = True
        self._alive[len(keep) :] = False
        self._ids = [self._ids[r] for r in keep]
        self._row_of = {memory_id: row for row, memory_id in enumerate(self._ids)}
        self._size = len(keep)
        self._dead = 0


def _grow(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
