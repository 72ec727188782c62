"""The embedded graph store: the congruence suite, networkx as the peer on random graphs, and what
only it has: bulk loads, the overlay and rebuilds of its adjacency, a file that reopens, the
actor."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import duckdb
import pytest

from actors.graph import GraphActor
from akasha_ray.config import GraphConfig
from akasha_ray.errors import ConfigError
from akasha_ray.graph import Entity, Relationship, open_graph_store
from akasha_ray.graph.duckdb_store import DuckDBGraphStore
from akasha_ray.graph.models import relationship_id
from tests.servers.graph_suite import (
    ACME,
    ADA,
    DEE,
    FIXED_SCENARIOS,
    T0,
    assert_neighbors_match_networkx,
    assert_path,
    assert_paths_match_networkx,
    load_small_world,
    random_world,
    scenario_random_graph,
)


@pytest.fixture
async def store(tmp_path):
    store = await DuckDBGraphStore.open(tmp_path / "graph.duckdb")
    yield store
    await store.close()


@pytest.mark.parametrize("scenario", FIXED_SCENARIOS, ids=lambda f: f.__name__)
async def test_congruence(store, scenario):
    await scenario(store)


async def test_random_graph_matches_networkx(store):
    await scenario_random_graph(store, seed=11, n_entities=300, n_relationships=900, queries=200)


async def test_bulk_overlay_rebuild_and_deletes_stay_exact(store):
    """Every way the adjacency changes keeps answers equal to networkx: a bulk load (rebuilt on
    the next read), small batches (overlay), updates and deletes (dead edges), then enough small
    writes to trigger a rebuild."""
    rng = random.Random(5)
    entities, relationships = random_world(rng, 1500, 9000)
    nodes = [e.id for e in entities]
    await store.upsert_entities(entities)
    bulk, rest = relationships[:5000], relationships[5000:]
    await store.upsert_relationships(bulk)
    assert (await store.stats()).details["stale"] is True
    await assert_paths_match_networkx(store, bulk, nodes, rng, 60)
    details = (await store.stats()).details
    assert (details["stale"], details["overlay_edges"]) == (False, 0)

    for start in range(0, 1000, 100):
        await store.upsert_relationships(rest[start : start + 100])
    live = bulk + rest[:1000]
    assert (await store.stats()).details["overlay_edges"] == 1000
    await assert_paths_match_networkx(store, live, nodes, rng, 60)
    await assert_neighbors_match_networkx(store, live, nodes, rng, 15)

    # Updates: close some relationships' windows; deletes: drop a few entities.
    updated = []
    for rel in rng.sample(live, 200):
        fields = rel.model_dump(exclude={"id", "valid_to"})
        updated.append(Relationship(**fields, valid_to=(rel.valid_from or T0) + timedelta(days=3)))
    await store.upsert_relationships(updated)
    by_id = {r.id: r for r in live} | {r.id: r for r in updated}
    gone = set(rng.sample(nodes, 30))
    for entity_id in sorted(gone):
        assert await store.delete_entity(entity_id)
    live = [r for r in by_id.values() if r.source not in gone and r.target not in gone]
    kept = [n for n in nodes if n not in gone]
    assert (await store.stats()).relationships == len(live)
    await assert_paths_match_networkx(store, live, kept, rng, 60)
    await assert_neighbors_match_networkx(store, live, kept, rng, 15)

    rebuilds = (await store.stats()).details["rebuilds"]
    later = [r for r in rest[1000:] if r.source not in gone and r.target not in gone]
    for start in range(0, len(later), 500):
        await store.upsert_relationships(later[start : start + 500])
    live += later
    await assert_paths_match_networkx(store, live, kept, rng, 60)
    assert (await store.stats()).details["rebuilds"] > rebuilds


async def test_reopened_file_answers_the_same(tmp_path):
    path = tmp_path / "graph.duckdb"
    store = await DuckDBGraphStore.open(path)
    relationships = await load_small_world(store)
    await store.link_memories({"bot/m-1": [ADA]})
    before = (await store.shortest_path(ADA, DEE), await store.neighbors(ADA, depth=2))
    await store.close()

    store = await DuckDBGraphStore.open(path)
    try:
        assert (await store.shortest_path(ADA, DEE), await store.neighbors(ADA, depth=2)) == before
        assert await store.entity_memories(ADA) == (["bot/m-1"], None)
        assert (await store.stats()).relationships == len(relationships)
    finally:
        await store.close()


async def test_concurrent_calls_are_serialised(store):
    await load_small_world(store)
    extra = [Entity(id=f"x{i}", type="Node") for i in range(50)]
    await store.upsert_entities(extra)
    writes = [
        store.upsert_relationships([Relationship(source=ADA, target=e.id, type="SEES")])
        for e in extra
    ]
    reads = [store.shortest_path(ADA, DEE) for _ in range(50)]
    results = await asyncio.gather(*writes, *reads)
    assert results[:50] == [1] * 50
    for path in results[50:]:
        assert_path(path, 2)
    assert (await store.neighbors(ADA, types=["SEES"])).neighbors[-1].entity.id == "x9"


async def test_factory_and_actor(tmp_path):
    store = await open_graph_store(GraphConfig(), tmp_path)
    assert store.backend == "duckdb"
    await store.close()
    assert (tmp_path / "graph" / "graph.duckdb").exists()
    with pytest.raises(ConfigError):
        await open_graph_store(GraphConfig(backend="neo4j"), tmp_path)

    actor = GraphActor(GraphConfig().model_dump(), str(tmp_path))
    assert await actor.ready() == "duckdb"
    await load_small_world(actor)
    assert_path(await actor.shortest_path(ADA, DEE), 2)
    assert [n.entity.id for n in (await actor.neighbors(ACME)).neighbors] == [
        ADA,
        DEE,
        "place:paris",
    ]
    await actor.close()


async def test_a_graph_from_before_ownership_becomes_shared(tmp_path):
    """Tables of the graph before ownership are moved once: entities and relationships become
    shared (relationship ids unchanged), memory links (which named no system) are dropped."""
    path = tmp_path / "graph.duckdb"
    knows = relationship_id(ADA, "KNOWS", DEE, None)
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE graph_entities (key UBIGINT, id VARCHAR, type VARCHAR, properties VARCHAR)"
    )
    con.execute(
        "CREATE TABLE graph_relationships (key UBIGINT, id VARCHAR, source VARCHAR, "
        "target VARCHAR, type VARCHAR, properties VARCHAR, created_at TIMESTAMPTZ, "
        "valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ)"
    )
    con.execute(
        "CREATE TABLE graph_entity_memories "
        "(entity_key UBIGINT, entity_id VARCHAR, memory_id VARCHAR)"
    )
    con.execute(
        "INSERT INTO graph_entities VALUES (1, ?, 'Person', '{\"n\":1}'), (2, ?, 'Person', '{}')",
        [ADA, DEE],
    )
    con.execute(
        "INSERT INTO graph_relationships VALUES (3, ?, ?, ?, 'KNOWS', '{}', ?, NULL, NULL)",
        [knows, ADA, DEE, T0],
    )
    con.execute("INSERT INTO graph_entity_memories VALUES (1, ?, 'm-1')", [ADA])
    con.close()

    store = await DuckDBGraphStore.open(path)
    try:
        assert await store.get_entity(ADA) == Entity(id=ADA, type="Person", properties={"n": 1})
        assert await store.get_entity(ADA, "any-system") == await store.get_entity(ADA)
        path_ = await store.shortest_path(ADA, DEE, visible=["a"])
        assert [r.id for r in path_.relationships] == [knows]
        assert path_.relationships[0].system_id is None
        stats = await store.stats()
        assert (stats.entities, stats.relationships, stats.memory_links) == (2, 1, 0)
    finally:
        await store.close()
    con = duckdb.connect(str(path))
    listed = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    tables = {row[0] for row in listed}
    con.close()
    assert "graph_entities" not in tables and "graph_nodes" in tables


async def test_upserting_again_entities_whose_keys_need_64_bits(store):
    """Found by tests/e2e/test_fuzz.py: DuckDB pushed `key = a OR key = b` into the scan of the
    registered Arrow batch, and pyarrow refused a UBIGINT key >= 2**63 as an int64 literal."""
    from akasha_ray.graph.embedded import entity_key
    from akasha_ray.graph.models import node_key

    ids = [i for i in (f"e{n}" for n in range(100)) if entity_key(node_key(None, i)) >= 2**63]
    for count in (2, 3, 20):
        entities = [Entity(id=i, type="T") for i in ids[:count]]
        assert await store.upsert_entities(entities) == count
        assert await store.upsert_entities(entities) == count  # replaces: DELETE ... USING batch
