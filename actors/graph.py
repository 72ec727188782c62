"""The `graph` actor: sole owner of the knowledge graph store (a DuckDB file or a Neo4j driver).

The supervisor wraps it with `ray.remote(GraphActor)`; as an async actor it serves calls on one
event loop. The store opens on the first call (or `ready()`), not in the constructor. Who may ask
what is the HTTP layer's to check: it passes the caller's systems as `system_id` / `visible` /
`systems` (see `akasha_ray.graph.base`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from akasha_ray.config import GraphConfig
from akasha_ray.errors import Unavailable
from akasha_ray.graph import (
    Entity,
    GraphStats,
    GraphStore,
    Neighborhood,
    PathResult,
    Relationship,
    open_graph_store,
)
from akasha_ray.graph.models import DEFAULT_HOPS, DEFAULT_MEMORIES_PAGE


class GraphActor:
    def __init__(self, graph_config: dict[str, Any], data_dir: str) -> None:
        # Plain data in, so the config (secrets included) travels inside Ray, not via env.
        self._config = GraphConfig.model_validate(graph_config)
        self._data_dir = Path(data_dir)
        self._store: GraphStore | None = None
        self._opening = asyncio.Lock()

    async def _graph(self) -> GraphStore:
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await open_graph_store(self._config, self._data_dir)
        return self._store

    async def ready(self) -> str:
        """Open the store now, so configuration errors surface at start-up; returns the backend."""
        return (await self._graph()).backend

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        return await (await self._graph()).upsert_entities(entities)

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        return await (await self._graph()).upsert_relationships(relationships)

    async def get_entity(self, entity_id: str, system_id: str | None = None) -> Entity | None:
        return await (await self._graph()).get_entity(entity_id, system_id)

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
        graph = await self._graph()
        return await graph.neighbors(
            entity_id, depth, types, as_of, limit, system_id=system_id, visible=visible
        )

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
    ) -> PathResult:
        graph = await self._graph()
        return await graph.shortest_path(
            source, target, max_hops, types, as_of, directed, system_id=system_id, visible=visible
        )

    async def delete_entity(self, entity_id: str, system_id: str | None = None) -> bool:
        return await (await self._graph()).delete_entity(entity_id, system_id)

    async def link_memories(self, links: Mapping[str, Sequence[str]]) -> int:
        """Memory key -> entity ids, for a whole batch of memories in one call."""
        return await (await self._graph()).link_memories(links)

    async def unlink_memory(self, key: str) -> int:
        return await (await self._graph()).unlink_memory(key)

    async def entity_memories(
        self,
        entity_id: str,
        systems: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = DEFAULT_MEMORIES_PAGE,
    ) -> tuple[list[str], str | None]:
        return await (await self._graph()).entity_memories(entity_id, systems, after, limit)

    async def dump(self, system_id: str | None = None) -> dict[str, Any]:
        """Entities, relationships and memory links as JSON-able data (DR snapshots, exports)."""
        store = await self._graph()
        if not hasattr(store, "dump"):
            raise Unavailable(f"the {store.backend} graph cannot be snapshotted yet")
        return await store.dump(system_id)

    async def stats(self) -> GraphStats:
        return await (await self._graph()).stats()

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None
