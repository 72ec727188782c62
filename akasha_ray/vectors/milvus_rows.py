"""How memories map onto Milvus rows and filter expressions (pure functions, no I/O).

- Milvus caps a VARCHAR at 65,535 bytes and a JSON value at 64 KiB, and Milvus 2.3 has no nullable
  fields. Content (up to 32,768 characters, so up to 128 KiB of UTF-8) is split over
  CONTENT_FIELDS on character boundaries; metadata is a JSON object plus a `has_metadata` flag
  that tells {} from none. Metadata over 64 KiB of JSON is refused with InvalidInput.
- created_at is stored as exact epoch microseconds (INT64), so time filters are integer ranges.
- The primary key is the memory's key `<system_id>/<id>` (`akasha_ray.identity`); `id` is a field
  of its own for answers, and `content_hash` is kept for `existing` and `fetch`.
- Neither Milvus Lite 3.2 nor Milvus 2.3 supports expression templates (`filter_params`): each
  string goes into an expression only through `quote`, which escapes quotes, backslashes and line
  breaks; numbers are formatted from Python ints.
- Writes go as columnar insert requests built straight from the Arrow columns (`insert_requests`):
  pymilvus' row path spends about 190 us a row on type checks and packing (a 5,000-row batch took
  0.96 s to pack, against 0.1 s here). `rows_of` is the same mapping row by row, kept as the
  reference the unit tests hold the columnar one to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus import DataType
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from akasha_ray.embedding_dim import DIM
from akasha_ray.errors import InvalidInput
from akasha_ray.identity import SEPARATOR, key_array, memory_key
from akasha_ray.records import SCHEMA, time_us_of, vectors_of
from akasha_ray.times import from_us, to_us

VARCHAR_BYTES = 65_535
JSON_BYTES = 65_536
ID_BYTES = 256  # an id, a system id and the other names, each
KEY_BYTES = 2 * ID_BYTES + len(SEPARATOR)
HASH_BYTES = 64
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
# `fetch` also needs what `get` and search hits leave out (the API's Memory has no such fields).
FETCH_FIELDS = (*ROW_FIELDS, "content_hash", "embedding")
INSERT_CHUNK_BYTES = 16 << 20  # well under gRPC's 64 MiB message limit
STRING_FIELDS = ("id", "system_id", "conversation_id", "model", "model_revision", "content_hash")
NAME_FIELDS = ("id", "system_id")  # the parts of a key: at most ID_BYTES, no SEPARATOR


# -- expressions ---------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters but \t \n \r
_SPECIAL = re.compile(r'[\x00-\x1f"\\]')  # any character a literal must escape or refuse


def quote(value: str) -> str:
    """A Milvus string literal: double quotes, with backslash, quote and line breaks escaped."""
    if _CONTROL.search(value):
        raise InvalidInput("control characters are not allowed in ids and names")
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def key_in(keys: Sequence[str]) -> str:
    """`key in [...]` for these memory keys; when none needs escaping (one scan of them all, the
    common case) they are joined as they are, a tenth of the time of quoting 5,000 one by one."""
    if _SPECIAL.search("".join(keys)):
        return f"key in [{', '.join(quote(k) for k in keys)}]"
    return 'key in ["' + '", "'.join(keys) + '"]' if keys else "key in []"


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
        for name in NAME_FIELDS:
            value = columns[name][i]
            if len(value.encode()) > ID_BYTES or SEPARATOR in value:
                raise InvalidInput(_name_error(name), field=name)
        metadata_text = columns["metadata"][i]
        if metadata_text is not None and len(metadata_text.encode()) > JSON_BYTES:
            raise InvalidInput(
                f"memory {memory_id}: metadata over {JSON_BYTES} bytes of JSON cannot be stored "
                "in the warm tier",
                field="metadata",
            )
        metadata = None if metadata_text is None else json.loads(metadata_text)
        row = {
            "key": memory_key(columns["system_id"][i], memory_id),
            "id": memory_id,
            "embedding": vectors[i],
            "system_id": columns["system_id"][i],
            "conversation_id": columns["conversation_id"][i],
            "created_at": int(times[i]),
            "metadata": {} if metadata is None else metadata,
            "has_metadata": metadata is not None,
            "model": columns["model"][i],
            "model_revision": columns["model_revision"][i],
            "content_hash": columns["content_hash"][i],
        }
        row.update(zip(CONTENT_FIELDS, split_utf8(columns["content"][i], memory_id), strict=True))
        rows.append(row)
    return rows


def insert_requests(collection: str, batch: pa.Table) -> Iterator[milvus_pb2.InsertRequest]:
    """A batch in `records.SCHEMA` as columnar Milvus insert requests (one per INSERT_CHUNK_BYTES
    of rows), mapped as `rows_of` maps it; checks every row before yielding anything."""
    if batch.num_rows == 0:
        return
    _check_sizes(batch)
    content = batch.column("content")
    text_bytes = pc.binary_length(content).to_numpy(zero_copy_only=False)
    metadata = batch.column("metadata")
    meta_bytes = pc.fill_null(pc.binary_length(metadata), 2).to_numpy(zero_copy_only=False)
    row_bytes = DIM * 4 + 512 + 4 * (text_bytes.astype(np.int64) + meta_bytes)
    ends = np.cumsum(row_bytes)
    lo = 0
    while lo < batch.num_rows:
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + INSERT_CHUNK_BYTES, side="right")))
        yield _insert_request(collection, batch.slice(lo, hi - lo), text_bytes[lo:hi])
        lo = hi


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _name_error(name: str) -> str:
    what = "memory id" if name == "id" else name
    return f"{what} longer than {ID_BYTES} bytes or holding {SEPARATOR!r}"


def _check_sizes(batch: pa.Table) -> None:
    for name in NAME_FIELDS:
        column = batch.column(name)
        bad = pc.or_(
            pc.greater(pc.binary_length(column), ID_BYTES),
            pc.match_substring(column, SEPARATOR),
        )
        if pc.any(bad).as_py():
            raise InvalidInput(_name_error(name), field=name)
    ids = batch.column("id")
    metadata = batch.column("metadata")
    too_big = pc.fill_null(pc.greater(pc.binary_length(metadata), JSON_BYTES), False)
    if pc.any(too_big).as_py():
        memory_id = pc.filter(ids, too_big)[0].as_py()
        raise InvalidInput(
            f"memory {memory_id}: metadata over {JSON_BYTES} bytes of JSON cannot be stored "
            "in the warm tier",
            field="metadata",
        )


def _insert_request(
    collection: str, batch: pa.Table, text_bytes: np.ndarray
) -> milvus_pb2.InsertRequest:
    n = batch.num_rows
    request = milvus_pb2.InsertRequest(collection_name=collection, partition_name="", num_rows=n)

    def field(name: str, dtype: DataType) -> schema_pb2.FieldData:
        data = request.fields_data.add()
        data.field_name = name
        data.type = dtype.value
        return data

    field("key", DataType.VARCHAR).scalars.string_data.data.extend(key_array(batch).to_pylist())
    for name in STRING_FIELDS:
        field(name, DataType.VARCHAR).scalars.string_data.data.extend(
            batch.column(name).to_pylist()
        )
    # Nearly all content fits the first part; only longer texts are split, row by row.
    parts = [batch.column("content").to_pylist(), *([""] * n for _ in CONTENT_FIELDS[1:])]
    for i in np.flatnonzero(text_bytes > VARCHAR_BYTES).tolist():
        cut = split_utf8(parts[0][i], batch.column("id")[i].as_py())
        for part, value in zip(parts, cut, strict=True):
            part[i] = value
    for name, values in zip(CONTENT_FIELDS, parts, strict=True):
        field(name, DataType.VARCHAR).scalars.string_data.data.extend(values)
    field("created_at", DataType.INT64).scalars.long_data.data.extend(time_us_of(batch).tolist())
    metadata = batch.column("metadata")
    # The column holds JSON text already (of an object); Milvus takes the bytes as they are.
    field("metadata", DataType.JSON).scalars.json_data.data.extend(
        pc.cast(pc.fill_null(metadata, "{}"), pa.binary()).to_pylist()
    )
    field("has_metadata", DataType.BOOL).scalars.bool_data.data.extend(
        pc.is_valid(metadata).to_pylist()
    )
    vectors = field("embedding", DataType.FLOAT_VECTOR).vectors
    vectors.dim = DIM
    vectors.float_vector.MergeFromString(_packed_floats(vectors_of(batch)))
    return request


_FLOATS_TAG = _varint(schema_pb2.FloatArray.DESCRIPTOR.fields_by_name["data"].number << 3 | 2)


def _packed_floats(values: np.ndarray) -> bytes:
    """A serialized `FloatArray` holding these values: its one packed field, written as protobuf
    lays it out (tag, byte length, little-endian floats), for the message to parse in C. Filling
    `data` from Python goes value by value: 0.23 s for 10,000 vectors, against 0.03 s so."""
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _FLOATS_TAG + _varint(len(raw)) + raw


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
    """A Milvus row as the seam's memory dict (as `HotShard.get` returns it; no content_hash)."""
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
        name: [m[name] for m in memories]
        for name in SCHEMA.names
        if name not in ("embedding", "content_hash")
    }
    columns["metadata"] = [None if m is None else json.dumps(m) for m in columns["metadata"]]
    columns["content_hash"] = [row["content_hash"] for row in rows]
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
