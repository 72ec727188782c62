"""The graph seam: one async interface, an embedded (DuckDB) and a scale (Neo4j) implementation.

Both implementations give the same answers (tests/unit/test_graph_congruence.py runs one suite
against each). Shared rules:
- ids, type names, hop bounds and `as_of` are checked here in `akasha_ray.graph.models`, and a bad
  one raises `InvalidInput` (HTTP 422) before any query runs;
- an unknown entity named as a path end, a neighbourhood centre or a relationship end raises
  `NotFound` (404); `get_entity` returns None instead;
- a relationship counts `as_of` t when valid_from <= t < valid_to (absent bounds are open);
- paths are undirected unless `directed=True`; among equally short paths either may come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    Entity,
    GraphStats,
    Neighborhood,
    PathResult,
    Relationship,
)


@runtime_checkable
class GraphStore(Protocol):
    backend: str

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        """Insert or replace entities by id; returns how many distinct ids were written."""
        ...

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        """Insert or replace relationships by id; both ends must exist (else NotFound)."""
        ...

    async def get_entity(self, entity_id: str) -> Entity | None: ...

    async def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
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
    ) -> PathResult: ...

    async def delete_entity(self, entity_id: str) -> bool:
        """Delete the entity, its relationships and its memory links; False if it was absent."""
        ...

    async def link_memories(self, memory_id: str, entity_ids: Sequence[str]) -> int:
        """Record that a memory mentions these entities (which need not exist yet)."""
        ...

    async def unlink_memory(self, memory_id: str) -> int:
        """Forget every link of a memory (it was deleted); returns how many were removed."""
        ...

    async def entity_memories(self, entity_id: str) -> list[str]:
        """Ids of the memories that mention the entity, in id (so time) order."""
        ...

    async def stats(self) -> GraphStats: ...

    async def close(self) -> None: ...
