import pytest
from pydantic import ValidationError

from akasha_ray.models import IngestRequest, KeyRequest, MemoryIn, SearchRequest


def _loc(exc: ValidationError) -> list[str]:
    return [".".join(map(str, e["loc"])) for e in exc.errors()]


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
