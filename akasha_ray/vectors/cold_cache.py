"""Decoded cold partitions kept in memory, so a repeated cold search reads no file.

A cold data file holds one system's memories of one UTC month at most. Decoded once, it is kept
as unit vectors, creation times, keys and the columns a hit shows, under its object key and size:
a file rewritten by a delete is dropped by its writer (the cold owner), and one rewritten by
anyone else comes back with another size or is dropped when the listing no longer shows it.
Least recently used partitions go first once `max_bytes` is reached.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.embedding_dim import DIM
from akasha_ray.identity import keys_of
from akasha_ray.times import from_us
from akasha_ray.vectors.keyword_index import KeywordIndex

STACKS_KEPT = 4
SHOWN = ("id", "system_id", "conversation_id", "content", "metadata", "model", "model_revision")


def created_within(created_us: np.ndarray, start_us: int | None, end_us: int | None) -> np.ndarray:
    """Positions of the times in [start, end]."""
    keep = np.ones(len(created_us), dtype=bool)
    if start_us is not None:
        keep &= created_us >= start_us
    if end_us is not None:
        keep &= created_us <= end_us
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class Partition:
    keys: list[str]
    created_us: np.ndarray  # int64
    unit: np.ndarray  # float32 (n, DIM), each row of norm 1 (or 0)
    shown: pa.Table  # SHOWN columns

    @classmethod
    def of(cls, table: pa.Table) -> Partition:
        flat = table.column("embedding").combine_chunks().flatten()
        matrix = flat.to_numpy(zero_copy_only=False).reshape(-1, DIM).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        created = pc.cast(table.column("created_at"), pa.int64()).to_numpy()
        return cls(
            keys=keys_of(table),
            created_us=np.ascontiguousarray(created, dtype=np.int64),
            unit=matrix / np.where(norms == 0, 1.0, norms),
            shown=table.select(list(SHOWN)),
        )

    @property
    def nbytes(self) -> int:
        return self.unit.nbytes + self.created_us.nbytes + self.shown.nbytes + 64 * len(self.keys)

    @cached_property
    def keywords(self) -> tuple[KeywordIndex, np.ndarray]:
        """The BM25 index of the contents, built on the first keyword search and kept with the
        partition, and per index row the partition's row (a key held twice counts once)."""
        index, rows, seen = KeywordIndex(), [], set()
        for row, key in enumerate(self.keys):
            if key not in seen:
                seen.add(key)
                rows.append(row)
        contents = self.shown.column("content").take(pa.array(rows, pa.int64())).to_pylist()
        index.add([self.keys[r] for r in rows], [""] * len(rows), self.created_us[rows], contents)
        return index, np.asarray(rows, dtype=np.int64)

    def within(self, start_us: int | None, end_us: int | None) -> np.ndarray:
        """Row numbers created in [start, end]."""
        return created_within(self.created_us, start_us, end_us)

    def memory(self, row: int) -> dict[str, Any]:
        """Row `row` as a search hit shows it."""
        out = {name: self.shown.column(name)[row].as_py() for name in SHOWN}
        out["created_at"] = from_us(int(self.created_us[row]))
        out["metadata"] = None if out["metadata"] is None else json.loads(out["metadata"])
        return out


@dataclass(frozen=True)
class Stack:
    """The rows of several partitions as one matrix: a search scans it in one product instead
    of a loop over hundreds of files."""

    parts: tuple[Partition, ...]
    unit: np.ndarray  # float32 (rows, DIM)
    created_us: np.ndarray  # int64
    part: np.ndarray  # int32: which of `parts` each row is from
    row: np.ndarray  # int32: its row there

    @classmethod
    def of(cls, parts: tuple[Partition, ...]) -> Stack:
        """At least one partition (a search with none returns before stacking)."""
        sizes = [len(p.keys) for p in parts]
        return cls(
            parts=parts,
            unit=np.concatenate([p.unit for p in parts]),
            created_us=np.concatenate([p.created_us for p in parts]),
            part=np.repeat(np.arange(len(parts), dtype=np.int32), sizes),
            row=np.concatenate([np.arange(n, dtype=np.int32) for n in sizes]),
        )

    def key(self, index: int) -> str:
        return self.parts[self.part[index]].keys[self.row[index]]

    @cached_property
    def keywords(self) -> tuple[KeywordIndex, np.ndarray]:
        """The partitions' BM25 indexes joined into one (built on the first keyword search of
        this stack, kept with it), and per row of it the stack's row: one pass over the
        postings scores the whole stack, where an index per partition took one each."""
        index, taken = KeywordIndex.joined([part.keywords[0] for part in self.parts])
        starts = np.cumsum([0] + [len(part.keys) for part in self.parts[:-1]])
        rows = np.concatenate(
            [start + part.keywords[1] for start, part in zip(starts, self.parts, strict=True)]
        )
        return index, rows[taken]


class PartitionCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._held: OrderedDict[str, tuple[int, Partition]] = OrderedDict()
        self._bytes = 0
        # The last few stacks searched, by the identity of their partitions (which they hold,
        # so no other partition can take an id meanwhile); at most a quarter of max_bytes each.
        self._stacks: OrderedDict[tuple[int, ...], Stack] = OrderedDict()

    def stack(self, parts: list[Partition]) -> Stack:
        ids = tuple(id(p) for p in parts)
        held = self._stacks.get(ids)
        if held is not None:
            self._stacks.move_to_end(ids)
            return held
        stack = Stack.of(tuple(parts))
        if stack.unit.nbytes <= self.max_bytes // 4:
            self._stacks[ids] = stack
            while len(self._stacks) > STACKS_KEPT:
                self._stacks.popitem(last=False)
        return stack

    def get(self, key: str, size: int) -> Partition | None:
        held = self._held.get(key)
        if held is None or held[0] != size:
            return None
        self._held.move_to_end(key)
        return held[1]

    def put(self, key: str, size: int, partition: Partition) -> None:
        self.drop(key)
        if partition.nbytes > self.max_bytes:
            return
        self._held[key] = (size, partition)
        self._bytes += partition.nbytes
        while self._bytes > self.max_bytes:
            _, (_, oldest) = self._held.popitem(last=False)
            self._bytes -= oldest.nbytes

    def drop(self, key: str) -> None:
        held = self._held.pop(key, None)
        if held is not None:
            self._bytes -= held[1].nbytes
            self._stacks = OrderedDict(
                (ids, stack) for ids, stack in self._stacks.items() if id(held[1]) not in ids
            )

    def keep_only(self, keys: set[str]) -> None:
        """Forget partitions whose files are gone."""
        for key in [k for k in self._held if k not in keys]:
            self.drop(key)

    @property
    def bytes(self) -> int:
        return self._bytes
