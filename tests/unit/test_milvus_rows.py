"""The warm tier's row mapping and filter expressions (pure functions; Milvus runs them in the
congruence suite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.errors import InvalidInput
from akasha_ray.models import MAX_CONTENT_CHARS, MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors.milvus_rows import (
    CONTENT_FIELDS,
    JSON_BYTES,
    VARCHAR_BYTES,
    SearchFilter,
    id_in,
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
    assert id_in(["x", 'y"']) == 'id in ["x", "y\\""]'
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
