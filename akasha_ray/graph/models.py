"""The knowledge graph's records and answers, validated at the boundary.

Ids and type names travel into SQL parameters and into Cypher (type names as backquoted labels,
since Cypher cannot take a relationship type as a parameter), so both are held to strict patterns.

Ownership: an entity is `(system_id, id)`, the same rule as memories, so two systems may both have
a `person:alice` and neither can see, replace or delete the other's. Entities the admin writes
without a system are shared: every key may read them, and a system's relationships may end at
them. Stores key entities by one string, `<owner>/<id>` (`node_key`), where the owner of a shared
entity is `*`, which no system id can be. A relationship belongs to one system (or is shared) and
joins entities of its own system or shared ones; an id names the system's own entity first, else
the shared one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

from akasha_ray.errors import InvalidInput
from akasha_ray.identity import split_key
from akasha_ray.times import from_us as from_epoch_us  # noqa: F401  (re-exported)
from akasha_ray.times import to_us as epoch_us
from akasha_ray.validation import check_json, utc

ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
# Same shape as akasha_ray.models.MemoryId (UUIDv7 or a client-chosen id).
MEMORY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TYPE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
RELATIONSHIP_ID_PATTERN = r"^[0-9a-f]{32}$"
# Same shape as akasha_ray.models.Name.
SYSTEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"

MIN_HOPS, MAX_HOPS, DEFAULT_HOPS = 1, 10, 5
MAX_DEPTH = 5
MAX_NEIGHBORS = 10_000
MAX_PROPERTIES_BYTES = 65_536
# A traversal stops expanding once it has reached more entities than this, and says
# `truncated: true` (GraphConfig.max_frontier overrides it).
DEFAULT_MAX_FRONTIER = 100_000
MAX_MEMORIES_PAGE, DEFAULT_MEMORIES_PAGE = 1000, 100  # one page over HTTP
# One store call: a search by entity_id asks for many more keys than a page.
MAX_MEMORIES_CALL = 100_000

SHARED = "*"  # the owner of shared entities in stores; not a valid system id
NODE_SEPARATOR = "/"  # in neither ids nor system ids

_TYPE_NAME = re.compile(TYPE_NAME_PATTERN)
_ENTITY_ID = re.compile(ENTITY_ID_PATTERN)
_MEMORY_ID = re.compile(MEMORY_ID_PATTERN)
_SYSTEM_ID = re.compile(SYSTEM_ID_PATTERN)


def _bounded_properties(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return value
    size = len(encode_properties(value))
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"properties take {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES}")
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(utc)]
EntityId = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
MemoryId = Annotated[str, StringConstraints(pattern=MEMORY_ID_PATTERN)]
TypeName = Annotated[str, StringConstraints(pattern=TYPE_NAME_PATTERN)]
SystemId = Annotated[str, StringConstraints(pattern=SYSTEM_ID_PATTERN)]
Properties = Annotated[
    dict[str, JsonValue], AfterValidator(check_json), AfterValidator(_bounded_properties)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Entity(Strict):
    """Something the systems talk about: a person, a product, a place."""

    id: EntityId = Field(description="Stable id chosen by the client, e.g. `person:ada`.")
    type: TypeName = Field(description="Entity type, e.g. `Person`.")
    properties: Properties = Field(default_factory=dict, description="Any JSON object.")
    system_id: SystemId | None = Field(
        None,
        description="The owning system; optional when the key holds one system. Absent on an "
        "admin's write: a shared entity, which every key may read.",
    )

    @property
    def node(self) -> str:
        return node_key(self.system_id, self.id)


class Relationship(Strict):
    """A typed edge from `source` to `target`, optionally valid only within [from, to).

    Its id is derived from (system_id, source, type, target, valid_from), so sending the same
    relationship again updates it (properties, created_at, valid_to) instead of duplicating it;
    a client may send the id back, but it must match. Its ends are entities of its own system or
    shared ones (the system's own entity first when both exist).
    """

    id: str | None = Field(None, pattern=RELATIONSHIP_ID_PATTERN, description="Derived; optional.")
    system_id: SystemId | None = Field(
        None,
        description="The owning system; optional when the key holds one system. Absent on an "
        "admin's write: a shared relationship, between shared entities only.",
    )
    source: EntityId
    target: EntityId
    type: TypeName = Field(description="Relationship type, e.g. `WORKS_AT`.")
    properties: Properties = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))
    valid_from: UtcDatetime | None = Field(None, description="Unbounded in the past when absent.")
    valid_to: UtcDatetime | None = Field(None, description="Exclusive; open-ended when absent.")
    _sent_id: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _interval_and_id(self) -> Relationship:
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ValueError("valid_to must be later than valid_from")
        derived = relationship_id(
            self.source, self.type, self.target, self.valid_from, self.system_id
        )
        if self.id is not None and self.id != derived:
            if self.system_id is None:  # the owner comes from the key: checked in `owned_by`
                self._sent_id = self.id
            else:
                raise ValueError(
                    "id does not match (system_id, source, type, target, valid_from); "
                    "leave it out to derive it"
                )
        self.id = derived
        return self

    def owned_by(self, system_id: str | None) -> Relationship:
        """This relationship owned by `system_id` (the key's system), its id derived again."""
        if system_id == self.system_id and self._sent_id is None:
            return self
        derived = relationship_id(self.source, self.type, self.target, self.valid_from, system_id)
        if self._sent_id is not None and self._sent_id != derived:
            raise InvalidInput(
                "id does not match (system_id, source, type, target, valid_from); "
                "leave it out to derive it",
                field="relationships.id",
            )
        return self.model_copy(update={"system_id": system_id, "id": derived})

    def valid_at(self, moment: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_to is None or moment < self.valid_to
        )


class Neighbor(Strict):
    entity: Entity
    depth: int = Field(ge=1, description="Hops from the entity asked about.")


class Neighborhood(Strict):
    """Entities within `depth` hops, nearest first (ties by owner, shared first, then by id), and
    the relationships between them that the search crossed: each joins two returned entities
    (or the centre) and has at least one end nearer than `depth`."""

    center: str
    neighbors: list[Neighbor]
    relationships: list[Relationship]
    truncated: bool = Field(
        description="True when `limit` cut the list, or when the search reached more entities "
        "than the frontier cap before `depth` (the levels it finished are whole)."
    )


class PathResult(Strict):
    """`path` lists entity ids from source to target (None: no path within max_hops);
    `relationships[i]` joins `path[i]` and `path[i + 1]`; `systems[i]` owns `path[i]` (None:
    shared)."""

    path: list[str] | None
    relationships: list[Relationship]
    systems: list[str | None] | None = None
    truncated: bool = Field(
        False,
        description="True when the search reached more entities than the frontier cap before "
        "it met the target: a path may exist that it did not look for.",
    )


class GraphStats(Strict):
    backend: str
    entities: int
    relationships: int
    memory_links: int
    details: dict[str, JsonValue] = Field(default_factory=dict)


def relationship_id(
    source: str,
    rel_type: str,
    target: str,
    valid_from: datetime | None,
    system_id: str | None = None,
) -> str:
    return relationship_id_us(
        source, rel_type, target, None if valid_from is None else epoch_us(valid_from), system_id
    )


def relationship_id_us(
    source: str,
    rel_type: str,
    target: str,
    valid_from_us: int | None,
    system_id: str | None = None,
) -> str:
    """The id of a relationship, from what identifies it (valid_from in epoch µs)."""
    # \x1f cannot appear in ids or type names, so the parts cannot run into each other; a
    # shared relationship has four parts, a system's five, so the two never meet either.
    stamp = "" if valid_from_us is None else str(valid_from_us)
    canonical = f"{source}\x1f{rel_type}\x1f{target}\x1f{stamp}"
    if system_id is not None and system_id != SHARED:
        canonical = f"{system_id}\x1f{canonical}"
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def owner_of(system_id: str | None) -> str:
    """The owner stores write: the system, or SHARED."""
    return SHARED if system_id is None else system_id


def system_of(owner: str) -> str | None:
    """The `system_id` answers carry: None for a shared entity or relationship."""
    return None if owner == SHARED else owner


def node_key(system_id: str | None, entity_id: str) -> str:
    """How stores key an entity: `<owner>/<id>`."""
    return f"{owner_of(system_id)}{NODE_SEPARATOR}{entity_id}"


def split_node(key: str) -> tuple[str | None, str]:
    """(system_id or None for shared, entity id) of a node key."""
    owner, _, entity_id = key.partition(NODE_SEPARATOR)
    return system_of(owner), entity_id


def candidates(entity_id: str, system_id: str | None) -> list[str]:
    """The node keys an id may name, in order: the system's own entity, then the shared one."""
    shared = node_key(None, entity_id)
    return [shared] if system_id is None else [node_key(system_id, entity_id), shared]


def visible_owners(visible: object, field: str = "visible") -> frozenset[str] | None:
    """The owners a traversal may cross: the given systems plus SHARED; None: every owner."""
    systems = check_systems(visible, field)
    return None if systems is None else frozenset(systems) | {SHARED}


def check_systems(systems: object, field: str = "systems") -> list[str] | None:
    """A list of system ids, sorted and distinct; None stays None (every system)."""
    if systems is None:
        return None
    if isinstance(systems, str) or not isinstance(systems, list | tuple | set | frozenset):
        raise InvalidInput(f"{field} must be a list of system ids", field=field)
    return sorted({check_system_id(s, field) for s in systems})


def check_links(links: object, field: str = "links") -> dict[tuple[str, str], str]:
    """(memory key, entity id) -> the memory's system, for every link of `links`
    (memory key -> entity ids)."""
    if not isinstance(links, Mapping):
        raise InvalidInput(f"{field} must map memory keys to entity ids", field=field)
    wanted: dict[tuple[str, str], str] = {}
    for key, entity_ids in links.items():
        system_id, _ = check_memory_key(key, field)
        for entity_id in check_entity_ids(entity_ids, "entity_ids"):
            wanted[(key, entity_id)] = system_id
    return wanted


def check_entity_ids(value: object, field: str = "entity_ids") -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise InvalidInput(f"{field} must be a list of entity ids", field=field)
    return [check_entity_id(e, field) for e in value]


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


def check_system_id(value: object, field: str = "system_id") -> str:
    if not isinstance(value, str) or not _SYSTEM_ID.fullmatch(value):
        raise InvalidInput(f"{field} must match {SYSTEM_ID_PATTERN}", field=field)
    return value


def check_owner(value: object, field: str = "system_id") -> str:
    """A system id, or None for shared, as the owner stores write."""
    return SHARED if value is None else check_system_id(value, field)


def check_memory_key(value: object, field: str = "memory_key") -> tuple[str, str]:
    """`(system_id, memory_id)` of a memory key (`akasha_ray.identity.memory_key`)."""
    try:
        system_id, memory_id = split_key(value) if isinstance(value, str) else ("", "")
    except ValueError:
        system_id, memory_id = "", ""
    if not (_SYSTEM_ID.fullmatch(system_id) and _MEMORY_ID.fullmatch(memory_id)):
        raise InvalidInput(f"{field} must be <system_id>/<memory id>", field=field)
    return system_id, memory_id


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
