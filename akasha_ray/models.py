"""Pydantic models at Akasha's boundaries: what clients send and what they get back."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from akasha_ray.embedding_dim import DIM
from akasha_ray.graph.models import EntityId

MAX_BATCH = 1000
MAX_CONTENT_CHARS = 32_768
MAX_SEARCH_LIMIT = 1000
MAX_ENTITIES = 100
MAX_METADATA_BYTES = 65_536  # as JSON; the warm tier (Milvus) cannot hold more

# Names travel into file names, logs and (later) SQL parameters: keep them boring.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
MemoryId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryIn(Strict):
    """One memory as a client sends it."""

    id: MemoryId | None = Field(None, description="Client-chosen id; default: a new UUIDv7.")
    system_id: Name = Field(description="The AI system this memory belongs to.")
    conversation_id: Name
    content: str = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    created_at: UtcDatetime | None = Field(None, description="RFC 3339 with offset; default now.")
    metadata: dict[str, Any] | None = None
    entities: list[EntityId] | None = Field(
        None, max_length=MAX_ENTITIES, description="Knowledge-graph entities this memory mentions."
    )

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be blank")
        return value

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value


class IngestRequest(Strict):
    memories: list[MemoryIn] = Field(min_length=1, max_length=MAX_BATCH)


class IngestResponse(Strict):
    ids: list[str]


def _unit_vector(vector: list[float]) -> list[float]:
    if len(vector) != DIM:
        raise ValueError(f"vector must have {DIM} values, got {len(vector)}")
    if not all(math.isfinite(x) for x in vector):
        raise ValueError("vector values must be finite numbers")
    if not any(vector):
        raise ValueError("vector must not be all zeros")
    return vector


class SearchRequest(Strict):
    query: str | None = Field(None, min_length=1, max_length=MAX_CONTENT_CHARS)
    vector: list[float] | None = Field(
        None,
        validate_default=True,
        description=f"A {DIM}-d query vector; normalized by the server.",
    )
    system_ids: list[Name] | None = Field(None, min_length=1, max_length=10_000)
    entity_id: EntityId | None = Field(None, description="Only memories mentioning this entity.")
    start: UtcDatetime | None = None
    end: UtcDatetime | None = Field(None, validate_default=True)
    limit: int = Field(10, ge=1, le=MAX_SEARCH_LIMIT)
    include_cold: bool = Field(False, description="Also search the cold archive (slower).")

    # Field validators (not a model validator) so a 422 names the offending field.
    @field_validator("query")
    @classmethod
    def _query_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("query must not be blank")
        return value

    @field_validator("vector")
    @classmethod
    def _one_of_query_vector(cls, value: list[float] | None, info: ValidationInfo):
        if "query" in info.data and (info.data["query"] is None) == (value is None):
            raise ValueError("give exactly one of query and vector")
        return None if value is None else _unit_vector(value)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info: ValidationInfo):
        start = info.data.get("start")
        if value is not None and start is not None and start > value:
            raise ValueError("end must not be before start")
        return value


Tier = Literal["hot", "warm", "cold"]


class Memory(Strict):
    """A stored memory, as returned by GET."""

    id: str
    system_id: str
    conversation_id: str
    content: str
    created_at: datetime
    metadata: dict[str, Any] | None = None
    model: str
    model_revision: str
    tier: Tier


class SearchHit(Strict):
    id: str
    system_id: str
    conversation_id: str
    content: str
    created_at: datetime
    similarity: float
    tier: Tier


class TierReport(Strict):
    tier: Tier
    latency_ms: float
    hits: int
    error: str | None = Field(None, description="Why this tier's answer is missing or partial.")


class SearchResponse(Strict):
    results: list[SearchHit]
    tiers: list[TierReport]
    partial: bool = Field(False, description="True when a tier failed or timed out.")


Scope = Literal["read", "write"]


class KeyRequest(Strict):
    system_ids: list[Name] = Field(min_length=1, max_length=10_000)
    scopes: list[Scope] = Field(min_length=1)


class KeyResponse(Strict):
    key: str
    system_ids: list[str]
    scopes: list[str]


def now_utc() -> datetime:
    return datetime.now(UTC)
