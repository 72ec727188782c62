from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from akasha_ray.models import IngestRequest, KeyRequest, MemoryIn, SearchRequest


def _loc(exc: ValidationError) -> list[str]:
    return [".".join(map(str, e["loc"])) for e in exc.errors()]


def _deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _memory(**overrides):
    return {"system_id": "bot", "conversation_id": "c1", "content": "hello", **overrides}


def test_memory_defaults_and_utc():
    memory = MemoryIn(**_memory(created_at="2026-03-01T12:00:00+02:00"))
    assert memory.created_at.utcoffset().total_seconds() == 0
    assert memory.created_at.hour == 10


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"system_id": "../etc"}, "system_id"),
        ({"system_id": ""}, "system_id"),
        ({"created_at": "2026-03-01T12:00:00"}, "created_at"),  # no offset
        ({"colour": "red"}, "colour"),
        ({"id": "has space"}, "id"),
    ],
)
def test_bad_memory_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as caught:
        MemoryIn(**_memory(**overrides))
    assert field in _loc(caught.value)


def test_batch_limits():
    assert len(IngestRequest(memories=[_memory()] * 1000).memories) == 1000
    with pytest.raises(ValidationError) as caught:
        IngestRequest(memories=[_memory()] * 1001)
    assert _loc(caught.value) == ["memories"]
    with pytest.raises(ValidationError):
        IngestRequest(memories=[])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"vector": [0.1] * 383}, "vector"),
        ({"vector": [0.0] * 384}, "vector"),
        ({"query": "a", "vector": [0.1] * 384}, "vector"),
        ({}, "vector"),
        ({"query": "a", "limit": 0}, "limit"),
        ({"query": "a", "limit": 1001}, "limit"),
        ({"query": "a", "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"query": "a", "unknown": 1}, "unknown"),
        ({"query": " "}, "query"),
        ({"query": "a", "system_ids": []}, "system_ids"),
    ],
)
def test_bad_search_names_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        SearchRequest(**body)
    assert field in _loc(caught.value)


def test_good_search():
    request = SearchRequest(vector=[1.0] + [0.0] * 383, limit=1000)
    assert request.query is None and request.limit == 1000


def test_key_request_scopes():
    with pytest.raises(ValidationError):
        KeyRequest(system_ids=["a"], scopes=["admin"])
    assert KeyRequest(system_ids=["a"], scopes=["read"]).scopes == ["read"]


def test_metadata_is_bounded():
    assert MemoryIn(**_memory(metadata={"k": "v" * 60_000})).metadata
    with pytest.raises(ValidationError) as caught:
        MemoryIn(**_memory(metadata={"k": "v" * 70_000}))
    assert "metadata" in _loc(caught.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"content": "hi \ud800"}, "content"),
        ({"metadata": {"k": "\ud800"}}, "metadata"),
        ({"metadata": {"\udc00": 1}}, "metadata"),
        ({"metadata": {"k": [float("nan")]}}, "metadata"),
        ({"metadata": {"k": float("inf")}}, "metadata"),
        ({"metadata": {"a": {"b": [{}] * 3}} | {"deep": _deep(40)}}, "metadata"),
        ({"id": "a\ud800"}, "id"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at"),  # below year 1 in UTC
        ({"created_at": "9999-12-31T23:59:59-01:00"}, "created_at"),  # beyond 9999 in UTC
        ({"created_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}, "created_at"),
    ],
)
def test_hostile_memory_names_the_field(overrides, field):
    with pytest.raises(ValidationError) as caught:
        MemoryIn(**_memory(**overrides))
    assert _loc(caught.value) == [field]


def test_memory_may_be_dated_a_little_ahead():
    soon = datetime.now(UTC) + timedelta(hours=12)
    assert MemoryIn(**_memory(created_at=soon.isoformat())).created_at == soon
    assert MemoryIn(**_memory(metadata={"deep": _deep(31)})).metadata


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "\ud800"}, "query"),
        ({"vector": [1e308] + [0.1] * 383}, "vector"),  # float32 overflows
        ({"vector": [1e-50] * 384}, "vector"),  # all zero as float32
        ({"vector": [float("nan")] + [0.1] * 383}, "vector"),
        ({"query": "a", "start": "0001-01-01T00:00:00+01:00"}, "start"),
        ({"query": "a", "end": "9999-12-31T23:59:59-01:00"}, "end"),
    ],
)
def test_hostile_search_names_the_field(body, field):
    with pytest.raises(ValidationError) as caught:
        SearchRequest(**body)
    assert _loc(caught.value) == [field]


def test_search_vector_is_scaled_to_unit_length_and_bounds_may_be_far():
    request = SearchRequest(
        vector=[3.0e38, 3.0e38] + [0.0] * 382,
        start="0001-01-01T00:00:00Z",
        end="9999-12-31T00:00:00Z",
    )
    assert request.vector[:2] == pytest.approx([2**-0.5, 2**-0.5])
