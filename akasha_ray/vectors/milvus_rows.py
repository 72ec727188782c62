"""How memories map onto Milvus rows and filter expressions (pure functions, no I/O).

- Milvus caps a VARCHAR at 65,535 bytes and a JSON value at 64 KiB, and Milvus 2.3 has no nullable
  fields. Content (up to 32,768 characters, so up to 128 KiB of UTF-8) is split over
  CONTENT_FIELDS on character boundaries; metadata is a JSON object plus a `has_metadata` flag
  that tells {} from none. Metadata over 64 KiB of JSON is refused with InvalidInput.
- created_at is stored as exact epoch microseconds (INT64), so time filters are integer ranges.
- Neither Milvus Lite 3.2 nor Milvus 2.3 supports expression templates (`filter_params`): each
  string goes into an expression only through `quote`, which escapes quotes, backslashes and line
  breaks; numbers are formatted from Python ints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from akasha_ray.embedding_dim import DIM
from akasha_ray.errors import InvalidInput
from akasha_ray.records import SCHEMA, time_us_of, vectors_of
from akasha_ray.times import from_us, to_us

VARCHAR_BYTES = 65_535
JSON_BYTES = 65_536
ID_BYTES = 256
# Enough parts for MAX_CONTENT_CHARS characters of 4 bytes each (a unit test checks it).
CONTENT_FIELDS = ("content", "content_2", "content_3")
ROW_FIELDS = (
    "id",
    "system_id",
    "conversation_id",
    *CONTENT_FIELDS,
    "created_at",
    "metadata",
    "has_metadata",
    "model",
    "model_revision",
)
INSERT_CHUNK_BYTES = 16 << 20  # well under gRPC's 64 MiB message limit


# -- expressions ---------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A Milvus string literal: double quotes, with backslash, quote and line breaks escaped."""
    if any(ord(ch) < 0x20 and ch not in "\t\n\r" for ch in value):
        raise InvalidInput("control characters are not allowed in ids and names")
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def id_in(memory_ids: Sequence[str]) -> str:
    return f"id in [{', '.join(quote(i) for i in memory_ids)}]"


@dataclass(frozen=True)
class SearchFilter:
    """k and the filters of a search; equal filters may share one Milvus call."""

    k: int
    system_ids: tuple[str, ...] | None
    start_us: int | None
    end_us: int | None

    @classmethod
    def of(
        cls,
        k: int,
        system_ids: Sequence[str] | None,
        start: datetime | None,
        end: datetime | None,
    ) -> SearchFilter:
        return cls(
            int(k),
            None if system_ids is None else tuple(dict.fromkeys(system_ids)),
            None if start is None else to_us(start),
            None if end is None else to_us(end),
        )

    @property
    def matches_nothing(self) -> bool:
        if self.k <= 0 or self.system_ids == ():
            return True
        return self.start_us is not None and self.end_us is not None and self.start_us > self.end_us

    def expression(self) -> str:
        terms = []
        if self.system_ids is not None:
            terms.append(f"system_id in [{', '.join(quote(s) for s in self.system_ids)}]")
        if self.start_us is not None:
            terms.append(f"created_at >= {int(self.start_us)}")
        if self.end_us is not None:
            terms.append(f"created_at <= {int(self.end_us)}")
        return " and ".join(terms)


# -- rows ----------------------------------------------------------------------------------------


def rows_of(batch: pa.Table) -> list[dict[str, Any]]:
    """Milvus rows for a batch in `records.SCHEMA`."""
    vectors = vectors_of(batch)
    times = time_us_of(batch)
    columns = {name: batch.column(name).to_pylist() for name in SCHEMA.names if name != "embedding"}
    rows = []
    for i, memory_id in enumerate(columns["id"]):
        if len(memory_id.encode()) > ID_BYTES:
            raise InvalidInput(f"memory id longer than {ID_BYTES} bytes", field="id")
        metadata_text = columns["metadata"][i]
        if metadata_text is not None and len(metadata_text.encode()) > JSON_BYTES:
            raise InvalidInput(
                f"memory {memory_id}: metadata over {JSON_BYTES} bytes of JSON cannot be stored "
                "in the warm tier",
                field="metadata",
            )
        metadata = None if metadata_text is None else json.loads(metadata_text)
        row = {
            "id": memory_id,
            "embedding": vectors[i],
            "system_id": columns["system_id"][i],
            "conversation_id": columns["conversation_id"][i],
            "created_at": int(times[i]),
            "metadata": {} if metadata is None else metadata,
            "has_metadata": metadata is not None,
            "model": columns["model"][i],
            "model_revision": columns["model_revision"][i],
        }
        row.update(zip(CONTENT_FIELDS, split_utf8(columns["content"][i], memory_id), strict=True))
        rows.append(row)
    return rows


def split_utf8(text: str, memory_id: str = "") -> list[str]:
    """`text` in len(CONTENT_FIELDS) parts of at most VARCHAR_BYTES each, cut between characters."""
    data = text.encode()
    parts = []
    for _ in CONTENT_FIELDS:
        cut = min(len(data), VARCHAR_BYTES)
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # inside a character: back off
            cut -= 1
        parts.append(data[:cut].decode())
        data = data[cut:]
    if data:
        raise InvalidInput(f"memory {memory_id}: content too long for the warm tier")
    return parts


def memory_of(row: dict[str, Any]) -> dict[str, Any]:
    """A Milvus row as the seam's memory dict (as `HotShard.get` returns it)."""
    return {
        "id": row["id"],
        "system_id": row["system_id"],
        "conversation_id": row["conversation_id"],
        "content": "".join(row[field] for field in CONTENT_FIELDS),
        "created_at": from_us(row["created_at"]),
        "metadata": row["metadata"] if row["has_metadata"] else None,
        "model": row["model"],
        "model_revision": row["model_revision"],
    }


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    """Milvus rows (embedding included) as a batch in `records.SCHEMA`."""
    memories = [memory_of(row) for row in rows]
    flat = np.asarray([row["embedding"] for row in rows], dtype=np.float32).reshape(-1)
    columns: dict[str, Any] = {
        name: [m[name] for m in memories] for name in SCHEMA.names if name != "embedding"
    }
    columns["metadata"] = [None if m is None else json.dumps(m) for m in columns["metadata"]]
    columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), DIM)
    arrays = [
        columns[name]
        if isinstance(columns[name], pa.Array)
        else pa.array(columns[name], type=SCHEMA.field(name).type)
        for name in SCHEMA.names
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def chunks_by_bytes(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Rows in groups small enough for one insert message."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        text_bytes = sum(len(row[f]) for f in CONTENT_FIELDS) + len(json.dumps(row["metadata"]))
        row_bytes = DIM * 4 + 512 + 4 * text_bytes
        if chunk and size + row_bytes > INSERT_CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += row_bytes
    if chunk:
        yield chunk


def batched(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for offset in range(0, len(items), size):
        yield list(items[offset : offset + size])
