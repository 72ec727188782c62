"""Embedded graph store: tables in one DuckDB file, paths by BFS over an in-memory CSR adjacency.

`EmbeddedGraph` (akasha_ray.graph.embedded) does the work synchronously; `DuckDBGraphStore` is its
async face. Calls are serialised by one lock (the DuckDB connection and the adjacency are not
shared between threads) and run on one worker thread, so a bulk load does not block the owning
actor's event loop. A path query over a fresh adjacency runs inline instead: it touches no
database and takes well under a millisecond, less than the hop to a worker thread costs (0.2 to
0.4 ms measured here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from akasha_ray.graph.embedded import EmbeddedGraph
from akasha_ray.graph.models import (
    DEFAULT_HOPS,
    Entity,
    GraphStats,
    Neighborhood,
    PathResult,
    Relationship,
)

T = TypeVar("T")


class DuckDBGraphStore:
    """The embedded `GraphStore`: `await DuckDBGraphStore.open(path)`."""

    backend = "duckdb"

    def __init__(self, graph: EmbeddedGraph, worker: ThreadPoolExecutor) -> None:
        self._graph = graph
        self._worker = worker
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> DuckDBGraphStore:
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="akasha-graph")
        loop = asyncio.get_running_loop()
        graph = await loop.run_in_executor(worker, EmbeddedGraph, path)
        return cls(graph, worker)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def upsert_entities(self, entities: Sequence[Entity]) -> int:
        return await self._run(self._graph.upsert_entities, list(entities))

    async def upsert_relationships(self, relationships: Sequence[Relationship]) -> int:
        return await self._run(self._graph.upsert_relationships, list(relationships))

    async def get_entity(self, entity_id: str) -> Entity | None:
        return await self._run(self._graph.get_entity, entity_id)

    async def neighbors(
        self,
        entity_id: str,
        depth: int = 1,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        limit: int = 1000,
    ) -> Neighborhood:
        return await self._run(self._graph.neighbors, entity_id, depth, types, as_of, limit)

    async def shortest_path(
        self,
        source: str,
        target: str,
        max_hops: int = DEFAULT_HOPS,
        types: Sequence[str] | None = None,
        as_of: datetime | None = None,
        directed: bool = False,
    ) -> PathResult:
        args = (source, target, max_hops, types, as_of, directed)
        async with self._lock:
            if self._graph.adjacency_fresh:
                return self._graph.shortest_path(*args)
        return await self._run(self._graph.shortest_path, *args)

    async def delete_entity(self, entity_id: str) -> bool:
        return await self._run(self._graph.delete_entity, entity_id)

    async def link_memories(self, memory_id: str, entity_ids: Sequence[str]) -> int:
        return await self._run(self._graph.link_memories, memory_id, list(entity_ids))

    async def unlink_memory(self, memory_id: str) -> int:
        return await self._run(self._graph.unlink_memory, memory_id)

    async def entity_memories(self, entity_id: str) -> list[str]:
        return await self._run(self._graph.entity_memories, entity_id)

    async def stats(self) -> GraphStats:
        return await self._run(self._graph.stats)

    async def close(self) -> None:
        await self._run(self._graph.close)
        self._worker.shutdown(wait=True)
