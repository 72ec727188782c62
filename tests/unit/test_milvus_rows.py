"""The warm tier's row mapping and filter expressions (pure functions; Milvus runs them in the
congruence suite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from akasha_ray.errors import InvalidInput
from akasha_ray.models import MAX_CONTENT_CHARS, MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors import milvus_rows
from akasha_ray.vectors.milvus_rows import (
    CONTENT_FIELDS,
    ID_BYTES,
    JSON_BYTES,
    KEY_BYTES,
    VARCHAR_BYTES,
    SearchFilter,
    insert_requests,
    key_in,
    quote,
    rows_of,
    split_utf8,
    table_of,
)

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_content_parts_hold_the_longest_content():
    assert len(CONTENT_FIELDS) * (VARCHAR_BYTES - 3) >= MAX_CONTENT_CHARS * 4
    for char in ("a", "é", "中", "😀"):
        parts = split_utf8(char * MAX_CONTENT_CHARS)
        assert "".join(parts) == char * MAX_CONTENT_CHARS
        assert all(len(p.encode()) <= VARCHAR_BYTES for p in parts)
    with pytest.raises(InvalidInput):
        split_utf8("😀" * (len(CONTENT_FIELDS) * VARCHAR_BYTES // 4 + 1))


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("plain", '"plain"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("it's", '"it\'s"'),
        ('x" or id != "', '"x\\" or id != \\""'),
        ("line\nbreak\ttab\r", '"line\\nbreak\\ttab\\r"'),
    ],
)
def test_quote_escapes_everything_that_ends_a_literal(value, literal):
    assert quote(value) == literal


def test_quote_refuses_other_control_characters():
    with pytest.raises(InvalidInput):
        quote("nul\x00")


def test_filters_become_one_expression():
    start, end = NOW - timedelta(days=1), NOW
    key = SearchFilter.of(5, ["a", 'b"', "a"], start, end)
    assert key.expression() == (
        'system_id in ["a", "b\\""] and created_at >= 1772236800000000 '
        "and created_at <= 1772323200000000"
    )
    assert SearchFilter.of(5, None, None, None).expression() == ""
    assert SearchFilter.of(5, [], None, None).matches_nothing
    assert SearchFilter.of(0, None, None, None).matches_nothing
    assert SearchFilter.of(5, None, end, start).matches_nothing
    assert not SearchFilter.of(5, None, start, start).matches_nothing
    assert key_in(["s/x", 's/y"']) == 'key in ["s/x", "s/y\\""]'
    # equal filters share one Milvus call
    assert SearchFilter.of(5, ["a"], start, end) == SearchFilter.of(5, ["a", "a"], start, end)


def _batch(metadata):
    vectors = np.eye(len(metadata), 384, dtype=np.float32)
    # model_construct: the API refuses such metadata too, but batches also come from other tiers.
    memories = [
        MemoryIn.model_construct(
            id=None,
            system_id="s",
            conversation_id="c",
            content=f"m{i}",
            created_at=NOW,
            metadata=m,
        )
        for i, m in enumerate(metadata)
    ]
    return build_batch(memories, vectors, model="m", model_revision="r", now=NOW)


def test_rows_round_trip_with_none_and_empty_metadata():
    batch = _batch([None, {}, {"k": [1, "two"]}])
    rows = rows_of(batch)
    assert [r["key"] for r in rows] == [f"s/{i}" for i in batch.column("id").to_pylist()]
    assert [r["content_hash"] for r in rows] == batch.column("content_hash").to_pylist()
    assert [r["has_metadata"] for r in rows] == [False, True, True]
    assert [r["metadata"] for r in rows] == [{}, {}, {"k": [1, "two"]}]
    assert rows[0]["created_at"] == 1772323200000000
    back = table_of(rows)
    assert back.equals(batch)


def test_metadata_too_large_for_milvus_is_refused():
    batch = _batch([{"blob": "x" * JSON_BYTES}])
    assert len(batch.column("metadata")[0].as_py()) > JSON_BYTES
    with pytest.raises(InvalidInput, match="metadata"):
        rows_of(batch)
    assert json.loads(batch.column("metadata")[0].as_py())["blob"]  # untouched


def _request_rows(request) -> list[dict]:
    """An insert request read back as rows (what the server would store)."""
    columns = {}
    for field in request.fields_data:
        if field.HasField("vectors"):
            values = np.asarray(field.vectors.float_vector.data, dtype=np.float32)
            columns[field.field_name] = list(values.reshape(-1, field.vectors.dim))
        else:
            kind = field.scalars.WhichOneof("data")
            values = list(getattr(field.scalars, kind).data)
            if kind == "json_data":
                values = [json.loads(v) for v in values]
            columns[field.field_name] = values
    assert all(len(v) == request.num_rows for v in columns.values())
    return [{k: v[i] for k, v in columns.items()} for i in range(request.num_rows)]


def test_insert_requests_carry_what_rows_of_maps():
    long_text = "é" * (VARCHAR_BYTES // 2 + 10)  # over one VARCHAR: split over two fields
    batch = _batch([None, {}, {"k": [1, "two"], "ü": None}, {"x": 1}])
    contents = batch.column("content").to_pylist()
    contents[3] = long_text
    batch = batch.set_column(3, "content", pa.array(contents))
    [request] = insert_requests("c", batch)
    assert request.collection_name == "c" and request.num_rows == 4
    got, want = _request_rows(request), rows_of(batch)
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.pop("embedding"), np.asarray(w.pop("embedding")))
        assert g == w
    assert got[3]["content"] + got[3]["content_2"] == long_text and got[3]["content_3"] == ""


def test_insert_requests_split_by_size_and_check_every_row_first(monkeypatch):
    batch = _batch([None] * 10)
    monkeypatch.setattr(milvus_rows, "INSERT_CHUNK_BYTES", 3 * (384 * 4 + 600))
    requests = list(insert_requests("c", batch))
    assert [r.num_rows for r in requests] == [3, 3, 3, 1]
    ids = [row["id"] for r in requests for row in _request_rows(r)]
    assert ids == batch.column("id").to_pylist()

    metadata = batch.column("metadata").to_pylist()
    metadata[9] = json.dumps({"blob": "x" * JSON_BYTES})
    too_big = batch.set_column(5, "metadata", pa.array(metadata))
    made = insert_requests("c", too_big)
    with pytest.raises(InvalidInput, match="metadata"):
        next(made)  # refused before the first request, not at the row that is too big
    long_id = batch.set_column(0, "id", pa.array(["x" * (ID_BYTES + 1)] * 10))
    with pytest.raises(InvalidInput, match="id"):
        list(insert_requests("c", long_id))


@pytest.mark.parametrize(
    ("name", "value"), [("id", "a/b"), ("system_id", "s/t"), ("system_id", "é" * 129)]
)
def test_a_key_part_with_the_separator_or_too_long_is_refused(name, value):
    batch = _batch([None, None])
    position = batch.schema.get_field_index(name)
    bad = batch.set_column(position, name, pa.array([value, "fine"]))
    with pytest.raises(InvalidInput) as caught:
        list(insert_requests("c", bad))
    assert caught.value.field == name
    with pytest.raises(InvalidInput):
        rows_of(bad)


def test_insert_requests_carry_the_key_and_the_longest_parts():
    batch = _batch([None, None])
    longest = "é" * (ID_BYTES // 2)  # ID_BYTES bytes
    batch = batch.set_column(0, "id", pa.array([longest, "x"]))
    batch = batch.set_column(1, "system_id", pa.array([longest, "s"]))
    [request] = insert_requests("c", batch)
    rows = _request_rows(request)
    assert [r["key"] for r in rows] == [f"{longest}/{longest}", "s/x"]
    assert len(rows[0]["key"].encode()) == KEY_BYTES


def test_key_in_quotes_only_when_a_key_needs_it():
    assert key_in(["s/a", "s/b"]) == 'key in ["s/a", "s/b"]'
    assert key_in([]) == "key in []"
    assert key_in(["s/a", 's/b"', "c\\/d"]) == 'key in ["s/a", "s/b\\"", "c\\\\/d"]'
    with pytest.raises(InvalidInput):
        key_in(["s/a", "s/b\x01"])
