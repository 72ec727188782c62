"""The graph seam: one async interface, an embedded (DuckDB) and a scale (Neo4j) implementation.

Both implementations give the same answers (tests/servers/graph_suite.py runs one suite against
each). Shared rules:
- ids, type names, hop bounds and `as_of` are checked here in `akasha_ray.graph.models`, and a bad
  one raises `InvalidInput` (HTTP 422) before any query runs;
- an entity is `(system_id, id)`; None is shared (see `models`). Reads name an entity by id within
  `system_id`: the system's own entity, else the shared one (`models.candidates`);
- `visible` lists the systems whose entities and relationships a traversal may cross (shared ones
  always); None crosses everything (the admin). Ownership checks against the caller's key are the
  HTTP layer's; the store only answers within what it is told is visible;
- an unknown entity named as a path end, a neighbourhood centre or a relationship end raises
  `NotFound` (404); `get_entity` returns None instead;
- a relationship counts `as_of` t when valid_from <= t < valid_to (absent bounds are open);
- paths are undirected unless `directed=True`; among equally short paths either may come back;
- traversals stop once they have reached more than `max_frontier` entities (the store's bound,
  `GraphConfig.max_frontier`) and say `truncated`;
- memory links are keyed by memory key (`akasha_ray.identity.memory_key`): a memory of system S
  mentions entity ids, which mean S's entity or the shared one, and need not exist yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    DEFAULT_MEMORIES_PAGE,
    Entity,
    GraphStats,
    Neighborhood,
    PathResult,
    Relationship,
)


@runtime_checkable
class GraphStore(Protocol):
    backend: str
    max_frontier: int

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        """Insert or replace entities by (system_id, id); returns how many were written."""
        ...

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        """Insert or replace relationships by id; both ends must be entities of the
        relationship's system or shared ones (else NotFound)."""
        ...

    async def get_entity(self, entity_id: str, system_id: str | None = None) -> Entity | None:
        """The system's entity of that id, else the shared one, else None."""
        ...

    async def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
        *,
        system_id: str | None = None,
        visible: Sequence[str] | None = None,
    ) -> Neighborhood:
        """Entities within `depth` hops (1 to MAX_DEPTH) over relationships of `types`."""
        ...

    async def shortest_path(
        self,
        source: str,
        target: str,
        max_hops: int = DEFAULT_HOPS,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        directed: bool = False,
        *,
        system_id: str | None = None,
        visible: Sequence[str] | None = None,
    ) -> PathResult: ...

    async def delete_entity(self, entity_id: str, system_id: str | None = None) -> bool:
        """Delete exactly `(system_id, id)` (None: the shared one), its relationships and the
        memory links that meant it; False if it was absent."""
        ...

    async def link_memories(self, links: Mapping[str, Sequence[str]]) -> int:
        """Record, for many memories at once (memory key -> entity ids), which entities each
        mentions; returns how many links are new."""
        ...

    async def unlink_memory(self, key: str) -> int:
        """Forget every link of a memory (it was deleted); returns how many were removed."""
        ...

    async def entity_memories(
        self,
        entity_id: str,
        systems: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = DEFAULT_MEMORIES_PAGE,
    ) -> tuple[list[str], str | None]:
        """Keys of the memories of `systems` (None: every system) that mention the id, in key
        order after the cursor `after`; and the cursor of the next page (None: no more)."""
        ...

    async def stats(self) -> GraphStats: ...

    async def close(self) -> None: ...
