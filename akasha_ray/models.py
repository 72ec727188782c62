"""Pydantic models at Akasha's boundaries: what clients send and what they get back."""

from __future__ import annotations

import json
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
from akasha_ray.validation import JsonObject, Text, not_future, unit_vector, utc

MAX_BATCH = 1000
MAX_CONTENT_CHARS = 32_768
MAX_SEARCH_LIMIT = 1000
MAX_ENTITIES = 100
MAX_METADATA_BYTES = 65_536  # as JSON; the warm tier (Milvus) cannot hold more

# Names travel into file names, logs and (later) SQL parameters: keep them boring.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
MemoryId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


UtcDatetime = Annotated[AwareDatetime, AfterValidator(utc)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryIn(Strict):
    """One memory as a client sends it."""

    id: MemoryId | None = Field(None, description="Client-chosen id; default: a new UUIDv7.")
    system_id: Name = Field(description="The AI system this memory belongs to.")
    conversation_id: Name
    content: Text = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    created_at: UtcDatetime | None = Field(
        None, description="RFC 3339 with offset; default now; at most now + 1 day."
    )
    metadata: JsonObject | None = None
    entities: list[EntityId] | None = Field(
        None, max_length=MAX_ENTITIES, description="Knowledge-graph entities this memory mentions."
    )

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be blank")
        return value

    @field_validator("created_at")
    @classmethod
    def _not_future(cls, value: datetime | None) -> datetime | None:
        return None if value is None else not_future(value)

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


SearchMode = Literal["vector", "keyword", "hybrid"]


class SearchRequest(Strict):
    query: Text | None = Field(None, min_length=1, max_length=MAX_CONTENT_CHARS)
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
    mode: SearchMode | None = Field(
        None,
        validate_default=True,
        description="vector: cosine; keyword: BM25 over `query`; hybrid: both rankings fused "
        "(reciprocal rank fusion). keyword and hybrid need `query` text. Default: hybrid for "
        "`query` text (the best recall measured), vector for a `vector`.",
    )

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
        return None if value is None else unit_vector(value, DIM)

    @field_validator("mode")
    @classmethod
    def _mode_has_text(cls, value: str, info: ValidationInfo) -> str:
        if value not in (None, "vector") and "query" in info.data and info.data["query"] is None:
            raise ValueError(f"mode {value!r} needs query text (a vector alone cannot match words)")
        return value

    @property
    def ranking(self) -> SearchMode:
        """The mode asked for, or the default for what was sent."""
        return self.mode or ("vector" if self.query is None else "hybrid")

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
    similarity: float | None = Field(
        description="Cosine similarity to the query (None for a hit only the keyword ranking "
        "found)."
    )
    score: float = Field(
        description="What results rank by: the cosine (vector), the BM25 score (keyword), the "
        "reciprocal rank fusion score (hybrid)."
    )
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


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where: the field, as in FastAPI's 422s.")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every error's body (`AkashaError.to_dict`, or FastAPI's `detail` alone for a 422)."""

    error: str | None = Field(None, description="Machine-readable code, e.g. not_found.")
    message: str | None = None
    field: str | None = Field(None, description="The field at fault, when there is one.")
    detail: list[ErrorDetail] | str | None = None


Scope = Literal["read", "write"]


class KeyRequest(Strict):
    system_ids: list[Name] = Field(min_length=1, max_length=10_000)
    scopes: list[Scope] = Field(min_length=1)
    expires_at: AwareDatetime | None = Field(
        None, description="RFC 3339 with offset, in the future; default: the key never expires."
    )

    @field_validator("expires_at")
    @classmethod
    def _in_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # the offset pushes it past year 1 or 9999
            raise ValueError("expires_at is out of range") from None
        if value <= now_utc():
            raise ValueError("expires_at must be in the future")
        return value


class KeyResponse(Strict):
    key: str = Field(description="The key itself: shown this once, never stored.")
    key_id: str = Field(description="Public id, to list and revoke the key.")
    system_ids: list[str]
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class KeyInfo(Strict):
    """A key as `GET /v1/keys` lists it: never the key, never its hash."""

    key_id: str
    system_ids: list[str]
    scopes: list[str] = Field(description="read and/or write; the admin key's is admin.")
    created_at: datetime
    expires_at: datetime | None
    expired: bool
    revoked: bool
    revoked_at: datetime | None


class KeyList(Strict):
    keys: list[KeyInfo]


def now_utc() -> datetime:
    return datetime.now(UTC)
