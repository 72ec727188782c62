"""The knowledge graph's records and answers, validated at the boundary.

Ids and type names travel into SQL parameters and into Cypher (type names as backquoted labels,
since Cypher cannot take a relationship type as a parameter), so both are held to strict patterns.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from akasha_ray.errors import InvalidInput
from akasha_ray.times import from_us as from_epoch_us  # noqa: F401  (re-exported)
from akasha_ray.times import to_us as epoch_us

ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
# Same shape as akasha_ray.models.MemoryId (UUIDv7 or a client-chosen id).
MEMORY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TYPE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
RELATIONSHIP_ID_PATTERN = r"^[0-9a-f]{32}$"

MIN_HOPS, MAX_HOPS, DEFAULT_HOPS = 1, 10, 5
MAX_DEPTH = 5
MAX_NEIGHBORS = 10_000
MAX_PROPERTIES_BYTES = 65_536

_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)
_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
_MEMORY_ID = re.compile(MEMORY_ID_PATTERN)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _bounded_properties(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return value
    size = len(encode_properties(value))
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"properties take {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES}")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
EntityId = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
MemoryId = Annotated[str, StringConstraints(pattern=MEMORY_ID_PATTERN)]
TypeName = Annotated[str, StringConstraints(pattern=TYPE_NAME_PATTERN)]
Properties = Annotated[dict[str, JsonValue], AfterValidator(_bounded_properties)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Entity(Strict):
    """Something the systems talk about: a person, a product, a place."""

    id: EntityId = Field(description="Stable id chosen by the client, e.g. `person:ada`.")
    type: TypeName = Field(description="Entity type, e.g. `Person`.")
    properties: Properties = Field(default_factory=dict, description="Any JSON object.")


class Relationship(Strict):
    """A typed edge from `source` to `target`, optionally valid only within [from, to).

    Its id is derived from (source, type, target, valid_from), so sending the same relationship
    again updates it (properties, created_at, valid_to) instead of duplicating it; a client may
    send the id back, but it must match.
    """

    id: str | None = Field(None, pattern=RELATIONSHIP_ID_PATTERN, description="Derived; optional.")
    source: EntityId
    target: EntityId
    type: TypeName = Field(description="Relationship type, e.g. `WORKS_AT`.")
    properties: Properties = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    valid_from: UtcDatetime | None = Field(None, description="Unbounded in the past when absent.")
    valid_to: UtcDatetime | None = Field(None, description="Exclusive; open-ended when absent.")

    @model_validator(mode="after")
    def _interval_and_id(self) -> Relationship:
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ValueError("valid_to must be later than valid_from")
        derived = relationship_id(self.source, self.type, self.target, self.valid_from)
        if self.id is not None and self.id != derived:
            raise ValueError(
                "id does not match (source, type, target, valid_from); leave it out to derive it"
            )
        self.id = derived
        return self

    def valid_at(self, moment: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_to is None or moment < self.valid_to
        )


class Neighbor(Strict):
    entity: Entity
    depth: int = Field(ge=1, description="Hops from the entity asked about.")


class Neighborhood(Strict):
    """Entities within `depth` hops, nearest first (ties by id), and the relationships between
    them that the search crossed: each joins two returned entities (or the centre) and has at
    least one end nearer than `depth`."""

    center: str
    neighbors: list[Neighbor]
    relationships: list[Relationship]
    truncated: bool = Field(description="True when `limit` cut the list.")


class PathResult(Strict):
    """`path` lists entity ids from source to target (None: no path within max_hops);
    `relationships[i]` joins `path[i]` and `path[i + 1]`."""

    path: list[str] | None
    relationships: list[Relationship]


class GraphStats(Strict):
    backend: str
    entities: int
    relationships: int
    memory_links: int
    details: dict[str, JsonValue] = Field(default_factory=dict)


def relationship_id(source: str, rel_type: str, target: str, valid_from: datetime | None) -> str:
    return relationship_id_us(
        source, rel_type, target, None if valid_from is None else epoch_us(valid_from)
    )


def relationship_id_us(source: str, rel_type: str, target: str, valid_from_us: int | None) -> str:
    """The id of a relationship, from what identifies it (valid_from in epoch µs)."""
    # \x1f cannot appear in ids or type names, so the parts cannot run into each other.
    stamp = "" if valid_from_us is None else str(valid_from_us)
    canonical = f"{source}\x1f{rel_type}\x1f{target}\x1f{stamp}"
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def encode_properties(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except ValueError as exc:  # NaN or infinity: JSON cannot carry them
        raise ValueError(f"properties are not valid JSON: {exc}") from exc


def decode_properties(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text and text != "{}" else {}


def check_entity_id(value: object, field: str = "id") -> str:
    if not isinstance(value, str) or not _ENTITY_ID.fullmatch(value):
        raise InvalidInput(f"{field} must match {ENTITY_ID_PATTERN}", field=field)
    return value


def check_memory_id(value: object, field: str = "memory_id") -> str:
    if not isinstance(value, str) or not _MEMORY_ID.fullmatch(value):
        raise InvalidInput(f"{field} must match {MEMORY_ID_PATTERN}", field=field)
    return value


def check_types(types: object, field: str = "types") -> tuple[str, ...] | None:
    """None means every type; an empty list is refused rather than read as 'none allowed'."""
    if types is None:
        return None
    if isinstance(types, str) or not isinstance(types, list | tuple | set | frozenset):
        raise InvalidInput(f"{field} must be a list of type names", field=field)
    if not types:
        raise InvalidInput(f"{field} must name at least one type, or be left out", field=field)
    for name in types:
        if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
            raise InvalidInput(f"{field}: {name!r} does not match {TYPE_NAME_PATTERN}", field=field)
    return tuple(sorted(set(types)))


def check_bounded_int(value: object, low: int, high: int, field: str) -> int:
    # bool is an int subclass; True must not pass for 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}", field=field)
    return value


def check_as_of(value: object, field: str = "as_of") -> int | None:
    """The instant as epoch microseconds, or None for 'ignore validity'."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} must be a timezone-aware datetime", field=field)
    return epoch_us(value)


MAX_UPSERT = 10_000


class EntitiesRequest(Strict):
    """Body of `POST /v1/graph/entities`."""

    entities: list[Entity] = Field(min_length=1, max_length=MAX_UPSERT)


class RelationshipsRequest(Strict):
    """Body of `POST /v1/graph/relationships`."""

    relationships: list[Relationship] = Field(min_length=1, max_length=MAX_UPSERT)
