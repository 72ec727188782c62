"""A memory's identity is `(system_id, id)`: two systems may use the same id.

Stores key their rows by one string, `<system_id>/<id>`. Neither part may contain `/` (see
`models.Name` and `models.MemoryId`), so the key is unambiguous and splits back exactly.

Each row also carries a `content_hash` of everything a client sent for it, so that a store, the
write path and migration can tell "the same memory again" (a no-op) from "another memory under
the same key" (a conflict), and a copy in another tier from a stale one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

SEPARATOR = "/"


def memory_key(system_id: str, memory_id: str) -> str:
    return f"{system_id}{SEPARATOR}{memory_id}"


def split_key(key: str) -> tuple[str, str]:
    """`(system_id, id)` of a key; ValueError when it is not one."""
    system_id, sep, memory_id = key.partition(SEPARATOR)
    if not sep or not system_id or not memory_id or SEPARATOR in memory_id:
        raise ValueError(f"not a memory key: {key!r}")
    return system_id, memory_id


def keys_of(table: pa.Table) -> list[str]:
    """The key of every row of a batch in `records.SCHEMA` (or any table with both columns)."""
    return key_array(table).to_pylist()


def key_array(table: pa.Table) -> pa.Array:
    if table.num_rows == 0:
        return pa.array([], type=pa.string())
    return pc.binary_join_element_wise(
        table.column("system_id").combine_chunks(),
        table.column("id").combine_chunks(),
        SEPARATOR,
    )


def content_hash(
    system_id: str,
    memory_id: str,
    conversation_id: str,
    content: str,
    created_at_us: int,
    metadata_json: str | None,
) -> str:
    """128-bit digest of what defines a memory (metadata compared as canonical JSON)."""
    metadata = None if metadata_json is None else json.loads(metadata_json)
    canonical = json.dumps(
        [system_id, memory_id, conversation_id, content, int(created_at_us), metadata],
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def first_per_key(table: pa.Table) -> pa.Table:
    """The batch keeping the first row of each key (a key repeated inside one batch)."""
    keys = keys_of(table)
    if len(set(keys)) == len(keys):
        return table
    seen: set[str] = set()
    keep = [not (k in seen or seen.add(k)) for k in keys]
    return table.filter(pa.array(keep))


def by_key(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {memory_key(r["system_id"], r["id"]): r for r in rows}
