"""Embedded graph store: tables in one DuckDB file, paths by BFS over an in-memory CSR adjacency.

`EmbeddedGraph` (akasha_ray.graph.embedded) does the work synchronously; `DuckDBGraphStore` is its
async face. Calls are serialised by one lock (the DuckDB connection and the adjacency are not
shared between threads) and run on one worker thread, so a bulk load does not block the owning
actor's event loop. A path query over a fresh adjacency runs inline instead: it touches no
database and takes well under a millisecond, less than the hop to a worker thread costs (0.2 to
0.4 ms measured here). Every traversal holds the lock for a bounded time: it stops once it has
reached `max_frontier` entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from akasha_ray.graph.embedded import EmbeddedGraph
from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    DEFAULT_MAX_FRONTIER,
    DEFAULT_MEMORIES_PAGE,
    Entity,
    GraphStats,
    Neighborhood,
    PathResult,
    Relationship,
    check_bounded_int,
)

T = TypeVar("T")


class DuckDBGraphStore:
    """The embedded `GraphStore`: `await DuckDBGraphStore.open(path)`."""

    backend = "duckdb"

    def __init__(self, graph: EmbeddedGraph, worker: ThreadPoolExecutor) -> None:
        self._graph = graph
        self._worker = worker
        self._lock = asyncio.Lock()

    @property
    def max_frontier(self) -> int:
        return self._graph.max_frontier

    @max_frontier.setter
    def max_frontier(self, value: int) -> None:
        self._graph.max_frontier = check_bounded_int(value, 1, 2**31 - 1, "max_frontier")

    @classmethod
    async def open(cls, path: Path, max_frontier: int = DEFAULT_MAX_FRONTIER) -> DuckDBGraphStore:
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="akasha-graph")
        loop = asyncio.get_running_loop()
        graph = await loop.run_in_executor(worker, EmbeddedGraph, path, max_frontier)
        return cls(graph, worker)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(
                self._worker, lambda: fn(*args, **kwargs)
            )

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        return await self._run(self._graph.upsert_entities, list(entities))

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        return await self._run(self._graph.upsert_relationships, list(relationships))

    async def get_entity(self, entity_id: str, system_id: str | None = None) -> Entity | None:
        return await self._run(self._graph.get_entity, entity_id, system_id)

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
        return await self._run(
            self._graph.neighbors,
            entity_id,
            depth,
            types,
            as_of,
            limit,
            system_id=system_id,
            visible=visible,
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
        args = (source, target, max_hops, types, as_of, directed)
        scope = {"system_id": system_id, "visible": visible}
        async with self._lock:
            if self._graph.adjacency_fresh:
                return self._graph.shortest_path(*args, **scope)
        return await self._run(self._graph.shortest_path, *args, **scope)

    async def delete_entity(self, entity_id: str, system_id: str | None = None) -> bool:
        return await self._run(self._graph.delete_entity, entity_id, system_id)

    async def link_memories(self, links: Mapping[str, Sequence[str]]) -> int:
        return await self._run(self._graph.link_memories, links)

    async def unlink_memory(self, key: str) -> int:
        return await self._run(self._graph.unlink_memory, key)

    async def entity_memories(
        self,
        entity_id: str,
        systems: Sequence[str] | None = None,
        after: str | None = None,
        limit: int = DEFAULT_MEMORIES_PAGE,
    ) -> tuple[list[str], str | None]:
        return await self._run(self._graph.entity_memories, entity_id, systems, after, limit)

    async def dump(self, system_id: str | None = None) -> dict[str, Any]:
        return await self._run(self._graph.dump, system_id)

    async def stats(self) -> GraphStats:
        return await self._run(self._graph.stats)

    async def close(self) -> None:
        await self._run(self._graph.close)
        self._worker.shutdown(wait=True)
