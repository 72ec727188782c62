"""The graph congruence suite against both backends: DuckDB, and the Neo4j backend over Bolt to a
real FalkorDB server (started here in its own network namespace; see tests/servers/falkordb.py).

One driver serves the whole session (a new FalkorDB connection can stall about a second). FalkorDB
binds a Bolt connection to the graph it first used and ignores the database named by later
transactions on it, so every test uses the same database, emptied before the test starts.
"""

from __future__ import annotations

import pytest
import pytest_asyncio
from neo4j import AsyncGraphDatabase, AsyncManagedTransaction

from akasha_ray.config import GraphConfig
from akasha_ray.errors import InvalidInput
from akasha_ray.graph import Entity, open_graph_store
from akasha_ray.graph.cypher import Dialect
from akasha_ray.graph.duckdb_store import DuckDBGraphStore
from akasha_ray.graph.models import relationship_id
from akasha_ray.graph.neo4j_store import Neo4jGraphStore
from tests.servers.falkordb import falkordb_server
from tests.servers.graph_suite import (
    ADA,
    DEE,
    FIXED_SCENARIOS,
    assert_path,
    load_small_world,
    scenario_random_graph,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
BACKENDS = ["duckdb", "falkordb"]
DATABASE = "akasha_test"


async def _empty(tx: AsyncManagedTransaction) -> None:
    await (await tx.run("MATCH (n) DETACH DELETE n")).consume()


@pytest.fixture(scope="session")
def falkordb():
    with falkordb_server() as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bolt_driver(falkordb):
    # Short timeouts: a stalled first connection is retried after 1 s, and a dead server fails
    # the test in seconds rather than after the driver's default 30 s of retries.
    driver = AsyncGraphDatabase.driver(
        falkordb.uri, auth=None, connection_acquisition_timeout=1.0, max_transaction_retry_time=5.0
    )
    yield driver
    await driver.close()


@pytest_asyncio.fixture(loop_scope="session", params=BACKENDS)
async def store(request, tmp_path, bolt_driver):
    if request.param == "duckdb":
        store = await DuckDBGraphStore.open(tmp_path / "graph.duckdb")
    else:
        async with bolt_driver.session(database=DATABASE) as session:
            await session.execute_write(_empty)
        store = await Neo4jGraphStore.attach(bolt_driver, database=DATABASE)
        assert store.dialect is Dialect.FALKORDB
    yield store
    await store.close()


@pytest.mark.parametrize("scenario", FIXED_SCENARIOS, ids=lambda f: f.__name__)
async def test_congruence(store, scenario):
    await scenario(store)


async def test_random_graph_matches_networkx(store):
    await scenario_random_graph(store, seed=23, n_entities=50, n_relationships=120, queries=60)


async def test_config_opens_neo4j_backend(falkordb, bolt_driver, tmp_path):
    """The factory's neo4j branch against the real server: its own driver, dialect detected."""
    async with bolt_driver.session(database=DATABASE) as session:
        await session.execute_write(_empty)
    config = GraphConfig(backend="neo4j", uri=falkordb.uri)
    store = await open_graph_store(config, tmp_path)
    try:
        assert store.backend == "neo4j"
        assert store.dialect is Dialect.FALKORDB
        await load_small_world(store)
        assert_path(await store.shortest_path(ADA, DEE), 2)
    finally:
        await store.close()


async def test_falkordb_refuses_rows_it_cannot_take(store):
    """FalkorDB's Bolt layer crashes on statements past ~4 KiB: the dialect cuts list parameters
    into pieces and refuses a single row bigger than that, instead of taking the server down."""
    big = Entity(id="big", type="Blob", properties={"text": "x" * 5000})
    if store.backend == "duckdb":
        assert await store.upsert_entities([big]) == 1
        return
    with pytest.raises(InvalidInput, match="too big for FalkorDB"):
        await store.upsert_entities([big])
    many = [Entity(id=f"e{i:04d}", type="Node", properties={"i": i}) for i in range(400)]
    assert await store.upsert_entities(many) == 400
    assert await store.link_memories({"bot/m-1": [e.id for e in many]}) == 400
    assert await store.entity_memories("e0399") == (["bot/m-1"], None)
    # Many memories in one call: the batched link of an ingest.
    links = {f"bot/m-{i:04d}": ["e0001", "e0002"] for i in range(300)}
    assert await store.link_memories(links) == 600
    page, cursor = await store.entity_memories("e0001", ["bot"], limit=1000)
    assert (len(page), cursor) == (301, None)
    hood = await store.neighbors("e0000")
    assert hood.neighbors == []


async def test_falkordb_graph_from_before_ownership_becomes_shared(bolt_driver):
    """Nodes and relationships written before ownership get the shared owner (relationship ids
    unchanged); memory mentions without a memory key are dropped."""
    knows = relationship_id("old:a", "KNOWS", "old:b", None)

    async def legacy(tx: AsyncManagedTransaction) -> None:
        await (await tx.run("MATCH (n) DETACH DELETE n")).consume()
        await (
            await tx.run(
                "CREATE (a:Entity {id: 'old:a', type: 'T', properties: ''}), "
                "(b:Entity {id: 'old:b', type: 'T', properties: ''}), "
                "(a)-[:KNOWS {id: $id, properties: '', created_at: 0}]->(b), "
                "(:MemoryMention {memory_id: 'm-1', entity_id: 'old:a'})",
                {"id": knows},
            )
        ).consume()

    async with bolt_driver.session(database=DATABASE) as session:
        await session.execute_write(legacy)
    store = await Neo4jGraphStore.attach(bolt_driver, database=DATABASE)
    try:
        assert await store.get_entity("old:a", "sys") == Entity(id="old:a", type="T")
        found = await store.shortest_path("old:a", "old:b", visible=["sys"])
        assert [(r.id, r.system_id) for r in found.relationships] == [(knows, None)]
        stats = await store.stats()
        assert (stats.entities, stats.relationships, stats.memory_links) == (2, 1, 0)
    finally:
        await store.close()
