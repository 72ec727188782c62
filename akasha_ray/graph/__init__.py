"""The knowledge graph seam: entities, relationships, neighbourhoods and shortest paths.

`open_graph_store` picks the backend from configuration and imports it only then, so the embedded
default never needs the neo4j driver installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from akasha_ray.errors import ConfigError
from akasha_ray.graph.base import GraphStore
from akasha_ray.graph.models import (
    Entity,
    GraphStats,
    Neighbor,
    Neighborhood,
    PathResult,
    Relationship,
)

if TYPE_CHECKING:
    from akasha_ray.config import GraphConfig

__all__ = [
    "Entity",
    "GraphStats",
    "GraphStore",
    "Neighbor",
    "Neighborhood",
    "PathResult",
    "Relationship",
    "graph_file",
    "open_graph_store",
]


def graph_file(data_dir: Path) -> Path:
    return data_dir / "graph" / "graph.duckdb"


async def open_graph_store(config: GraphConfig, data_dir: Path) -> GraphStore:
    """Open the configured backend: a DuckDB file under `data_dir`, or a Neo4j server."""
    if config.backend == "duckdb":
        from akasha_ray.graph.duckdb_store import DuckDBGraphStore

        return await DuckDBGraphStore.open(graph_file(data_dir), config.max_frontier)
    if config.backend == "neo4j":
        if not config.uri:
            raise ConfigError("graph.backend is neo4j but graph.uri is unset (AKASHA_GRAPH__URI)")
        from akasha_ray.graph.neo4j_store import Neo4jGraphStore

        password = config.password.get_secret_value() if config.password else None
        return await Neo4jGraphStore.connect(
            config.uri, user=config.user, password=password, max_frontier=config.max_frontier
        )
    raise ConfigError(f"unknown graph.backend {config.backend!r}")
