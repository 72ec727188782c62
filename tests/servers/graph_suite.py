"""The graph congruence suite: scenarios every `GraphStore` must answer identically, with networkx
as the independent peer for path lengths and neighbourhoods on random graphs.

Used by tests/unit/test_graph_duckdb.py (DuckDB) and tests/integration/test_graph_bolt.py (DuckDB
and FalkorDB over Bolt, the same assertions).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import networkx as nx
import pytest
from pydantic import ValidationError

from akasha_ray.errors import InvalidInput, NotFound
from akasha_ray.graph import Entity, GraphStore, PathResult, Relationship

T0 = datetime(2025, 3, 1, tzinfo=UTC)
ADA, BOB, CY, DEE, EVE = "person:ada", "person:bob", "person:cy", "person:dee", "person:eve"
ACME, PARIS = "org:acme", "place:paris"
PROPS = {"since": 2019, "tags": ["x", "ü"], "nested": {"none": None, "ratio": 1.5}}
HOSTILE_IDS = [
    "a'); DROP TABLE graph_entities; --",
    "x'}) DETACH DELETE n //",
    "a b",
    "",
    "é",
    "../etc",
    "a" * 129,
]
HOSTILE_TYPES = ["KNOWS`]->() DETACH DELETE n //", "KNOWS|LIKES", "1ABC", "a-b", "", "`", "A" * 65]


def _knows(source: str, target: str, **extra: object) -> Relationship:
    return Relationship(source=source, target=target, type="KNOWS", created_at=T0, **extra)


def small_world() -> tuple[list[Entity], list[Relationship]]:
    """ada-KNOWS->bob-KNOWS->cy-KNOWS->dee; ada and dee WORK_AT acme (in different windows);
    acme is LOCATED_IN paris; eve knows no one."""
    people = [Entity(id=p, type="Person", properties={"name": p[7:]}) for p in (ADA, BOB, CY, DEE)]
    entities = [
        *people,
        Entity(id=EVE, type="Person"),
        Entity(id=ACME, type="Org", properties={"employees": 12, "open": True}),
        Entity(id=PARIS, type="Place"),
    ]
    relationships = [
        _knows(ADA, BOB, properties=PROPS),
        _knows(BOB, CY),
        _knows(CY, DEE),
        Relationship(
            source=ADA,
            target=ACME,
            type="WORKS_AT",
            created_at=T0 + timedelta(microseconds=123_457),
            valid_from=T0,
            valid_to=T0 + timedelta(days=30),
        ),
        Relationship(source=DEE, target=ACME, type="WORKS_AT", valid_from=T0 + timedelta(days=10)),
        Relationship(source=ACME, target=PARIS, type="LOCATED_IN"),
    ]
    return entities, relationships


async def load_small_world(store: GraphStore) -> list[Relationship]:
    entities, relationships = small_world()
    assert await store.upsert_entities(entities) == len(entities)
    assert await store.upsert_relationships(relationships) == len(relationships)
    return relationships


def assert_path(
    result: PathResult,
    expected_length: int | None,
    *,
    types: Sequence[str] | None = None,
    as_of: datetime | None = None,
    directed: bool = False,
) -> None:
    """The path has the expected length and every hop is a relationship that passes the filters."""
    if expected_length is None:
        assert result.path is None and result.relationships == [], result
        return
    assert result.path is not None, f"expected a path of {expected_length} hops"
    assert len(result.path) - 1 == expected_length, result.path
    assert len(result.relationships) == expected_length
    for i, rel in enumerate(result.relationships):
        ends = (result.path[i], result.path[i + 1])
        if directed:
            assert (rel.source, rel.target) == ends, (i, rel, result.path)
        else:
            assert {rel.source, rel.target} == set(ends), (i, rel, result.path)
        assert types is None or rel.type in types
        assert as_of is None or rel.valid_at(as_of), (rel, as_of)


# -- fixed scenarios -------------------------------------------------------------------------------


async def scenario_entities_round_trip(store: GraphStore) -> None:
    entities, _ = small_world()
    await load_small_world(store)
    for entity in entities:
        assert await store.get_entity(entity.id) == entity
    assert await store.get_entity("person:nobody") is None
    # An upsert replaces type and properties.
    await store.upsert_entities([Entity(id=EVE, type="Robot", properties={"v": [1, 2]})])
    assert await store.get_entity(EVE) == Entity(id=EVE, type="Robot", properties={"v": [1, 2]})
    stats = await store.stats()
    assert (stats.entities, stats.relationships) == (7, 6)


async def scenario_paths(store: GraphStore) -> None:
    relationships = await load_small_world(store)
    mid = T0 + timedelta(days=20)
    assert_path(await store.shortest_path(ADA, DEE), 2)  # via acme, undirected
    assert_path(await store.shortest_path(DEE, ADA), 2)
    assert_path(await store.shortest_path(ADA, DEE, directed=True), 3, directed=True)
    assert_path(await store.shortest_path(DEE, ADA, directed=True), None)
    assert_path(await store.shortest_path(ADA, DEE, types=["KNOWS"]), 3, types=["KNOWS"])
    assert_path(await store.shortest_path(ADA, DEE, types=["KNOWS"], max_hops=2), None)
    assert_path(await store.shortest_path(ADA, DEE, max_hops=1), None)
    assert_path(await store.shortest_path(ADA, PARIS), 2)
    assert_path(await store.shortest_path(ADA, EVE, max_hops=10), None)
    assert_path(await store.shortest_path(ADA, DEE, types=["NO_SUCH_TYPE"]), None)
    same = await store.shortest_path(ADA, ADA)
    assert (same.path, same.relationships) == ([ADA], [])

    # The relationships on a path are the stored ones, properties and times exact.
    knows = await store.shortest_path(ADA, BOB)
    assert knows.path == [ADA, BOB]
    assert knows.relationships == [relationships[0]]
    works = await store.shortest_path(ACME, ADA, as_of=mid)
    assert works.relationships == [relationships[3]]

    # as_of: ada works at acme during [T0, T0+30d); dee from T0+10d on.
    for moment, hops in [
        (T0 - timedelta(days=1), 3),
        (T0 + timedelta(days=5), 3),
        (mid, 2),
        (T0 + timedelta(days=30), 3),  # valid_to is exclusive
        (T0 + timedelta(days=40), 3),
    ]:
        assert_path(await store.shortest_path(ADA, DEE, as_of=moment), hops, as_of=moment)
    assert_path(await store.shortest_path(ADA, DEE, as_of=mid, types=["WORKS_AT"]), 2, as_of=mid)
    assert_path(
        await store.shortest_path(ADA, DEE, as_of=mid, directed=True), 3, as_of=mid, directed=True
    )


async def scenario_path_errors(store: GraphStore) -> None:
    await load_small_world(store)
    with pytest.raises(NotFound) as err:
        await store.shortest_path(ADA, "person:nobody")
    assert err.value.field == "target"
    with pytest.raises(NotFound) as err:
        await store.shortest_path("person:nobody", ADA)
    assert err.value.field == "source"
    for hops in (0, 11, -1, True, 2.5, "5", None):
        with pytest.raises(InvalidInput) as err:
            await store.shortest_path(ADA, DEE, max_hops=hops)
        assert err.value.field == "max_hops"
    for types in (["bad-type"], [], "KNOWS", ["KNOWS", 5], *([t] for t in HOSTILE_TYPES)):
        with pytest.raises(InvalidInput) as err:
            await store.shortest_path(ADA, DEE, types=types)
        assert err.value.field == "types"
    with pytest.raises(InvalidInput):
        await store.shortest_path(ADA, DEE, as_of=datetime(2025, 3, 1))  # naive
    with pytest.raises(InvalidInput):
        await store.shortest_path(ADA, DEE, as_of="2025-03-01T00:00:00Z")


async def scenario_neighbors(store: GraphStore) -> None:
    relationships = await load_small_world(store)
    by_ends = {(r.source, r.target): r for r in relationships}

    def rels(*pairs: tuple[str, str]) -> list[Relationship]:
        return sorted((by_ends[p] for p in pairs), key=lambda r: r.id)

    hood = await store.neighbors(ADA)
    assert [(n.entity.id, n.depth) for n in hood.neighbors] == [(ACME, 1), (BOB, 1)]
    assert hood.neighbors[0].entity == Entity(
        id=ACME, type="Org", properties={"employees": 12, "open": True}
    )
    assert hood.relationships == rels((ADA, BOB), (ADA, ACME))
    assert not hood.truncated

    hood = await store.neighbors(ADA, depth=2)
    assert [(n.entity.id, n.depth) for n in hood.neighbors] == [
        (ACME, 1),
        (BOB, 1),
        (CY, 2),
        (DEE, 2),
        (PARIS, 2),
    ]
    # cy-dee joins two entities at the edge of the neighbourhood: not crossed.
    assert hood.relationships == rels(
        (ADA, BOB), (ADA, ACME), (BOB, CY), (DEE, ACME), (ACME, PARIS)
    )

    hood = await store.neighbors(ADA, depth=2, types=["KNOWS"])
    assert [(n.entity.id, n.depth) for n in hood.neighbors] == [(BOB, 1), (CY, 2)]
    hood = await store.neighbors(ADA, depth=2, as_of=T0 + timedelta(days=5))
    assert [(n.entity.id, n.depth) for n in hood.neighbors] == [
        (ACME, 1),
        (BOB, 1),
        (CY, 2),
        (PARIS, 2),
    ]
    hood = await store.neighbors(ADA, depth=2, limit=2)
    assert [n.entity.id for n in hood.neighbors] == [ACME, BOB]
    assert hood.truncated
    assert hood.relationships == rels((ADA, BOB), (ADA, ACME))

    hood = await store.neighbors(EVE, depth=3)
    assert (hood.neighbors, hood.relationships, hood.truncated) == ([], [], False)
    with pytest.raises(NotFound):
        await store.neighbors("person:nobody")
    for depth in (0, 6, True):
        with pytest.raises(InvalidInput):
            await store.neighbors(ADA, depth=depth)
    with pytest.raises(InvalidInput):
        await store.neighbors(ADA, limit=0)
    with pytest.raises(InvalidInput):
        await store.neighbors(ADA, types=["KNOWS`"])


async def scenario_updates_and_deletes(store: GraphStore) -> None:
    await load_small_world(store)
    later = T0 + timedelta(days=40)
    assert_path(await store.shortest_path(ADA, DEE, as_of=later), 3)
    # Same (source, type, target, valid_from): the same relationship, now valid longer.
    extended = Relationship(
        source=ADA, target=ACME, type="WORKS_AT", valid_from=T0, valid_to=T0 + timedelta(days=60)
    )
    assert await store.upsert_relationships([extended]) == 1
    assert (await store.stats()).relationships == 6
    path = await store.shortest_path(ADA, DEE, as_of=later)
    assert_path(path, 2, as_of=later)
    assert extended in path.relationships

    await store.link_memories("mem-1", [ACME, ADA])
    assert await store.delete_entity(ACME) is True
    assert await store.delete_entity(ACME) is False
    assert await store.get_entity(ACME) is None
    assert await store.entity_memories(ACME) == []
    assert await store.entity_memories(ADA) == ["mem-1"]
    stats = await store.stats()
    assert (stats.entities, stats.relationships) == (6, 3)
    assert_path(await store.shortest_path(ADA, PARIS, max_hops=10), None)
    assert_path(await store.shortest_path(ADA, DEE), 3)
    assert ACME not in {n.entity.id for n in (await store.neighbors(ADA, depth=3)).neighbors}
    with pytest.raises(NotFound):
        await store.shortest_path(ADA, ACME)

    # The entity can come back, and its relationships with it.
    await store.upsert_entities([Entity(id=ACME, type="Org")])
    assert_path(await store.shortest_path(ADA, PARIS, max_hops=10), None)
    await store.upsert_relationships(
        [Relationship(source=ACME, target=PARIS, type="LOCATED_IN"), extended]
    )
    assert_path(await store.shortest_path(ADA, PARIS), 2)


async def scenario_missing_ends(store: GraphStore) -> None:
    await load_small_world(store)
    batch = [_knows(EVE, ADA), _knows(EVE, "person:ghost")]
    with pytest.raises(NotFound) as err:
        await store.upsert_relationships(batch)
    assert "person:ghost" in err.value.message
    # Nothing of the batch was written.
    assert (await store.stats()).relationships == 6
    assert_path(await store.shortest_path(EVE, ADA), None)


async def scenario_memories(store: GraphStore) -> None:
    await load_small_world(store)
    assert await store.link_memories("0190a1b2-0000-7000-8000-000000000002", [ADA, BOB]) == 2
    assert await store.link_memories("0190a1b2-0000-7000-8000-000000000002", [ADA, CY, CY]) == 1
    assert await store.link_memories("0190a1b2-0000-7000-8000-000000000001", [ADA]) == 1
    assert await store.link_memories("0190a1b2-0000-7000-8000-000000000003", []) == 0
    # Entities need not exist yet: ingest names them before the graph knows them.
    assert await store.link_memories("m-9", ["person:zed"]) == 1
    assert await store.entity_memories(ADA) == [
        "0190a1b2-0000-7000-8000-000000000001",
        "0190a1b2-0000-7000-8000-000000000002",
    ]
    assert await store.entity_memories("person:zed") == ["m-9"]
    assert (await store.stats()).memory_links == 5
    assert await store.unlink_memory("0190a1b2-0000-7000-8000-000000000002") == 3
    assert await store.unlink_memory("0190a1b2-0000-7000-8000-000000000002") == 0
    assert await store.entity_memories(ADA) == ["0190a1b2-0000-7000-8000-000000000001"]
    assert await store.entity_memories(BOB) == []
    for bad in HOSTILE_IDS:
        with pytest.raises(InvalidInput):
            await store.link_memories(bad, [ADA])
        with pytest.raises(InvalidInput):
            await store.link_memories("m-1", [bad])
        with pytest.raises(InvalidInput):
            await store.entity_memories(bad)
        with pytest.raises(InvalidInput):
            await store.unlink_memory(bad)
    assert (await store.stats()).memory_links == 2


async def scenario_hostile_input(store: GraphStore) -> None:
    """Hostile ids and types are refused at the model and at the store; odd but allowed ids are
    stored as data."""
    await load_small_world(store)
    for bad in HOSTILE_IDS:
        with pytest.raises(ValidationError):
            Entity(id=bad, type="Person")
        with pytest.raises(ValidationError):
            Relationship(source=ADA, target=bad, type="KNOWS")
        with pytest.raises(InvalidInput):
            await store.get_entity(bad)
        with pytest.raises(InvalidInput):
            await store.shortest_path(ADA, bad)
        with pytest.raises(InvalidInput):
            await store.neighbors(bad)
        with pytest.raises(InvalidInput):
            await store.delete_entity(bad)
    for bad in HOSTILE_TYPES:
        with pytest.raises(ValidationError):
            Relationship(source=ADA, target=BOB, type=bad)
        with pytest.raises(ValidationError):
            Entity(id="x", type=bad)
        # A model that skipped validation must not carry a type into a query either.
        unchecked = Relationship.model_construct(
            id="0" * 32, source=ADA, target=BOB, type=bad, properties={}, created_at=T0
        )
        with pytest.raises(InvalidInput):
            await store.upsert_relationships([unchecked])
    odd = "a.b:c@d-e_f"
    quote = Entity(id=odd, type="Thing", properties={"text": 'it\'s a `quote` "x" \\ ; --'})
    await store.upsert_entities([quote])
    await store.upsert_relationships([_knows(odd, ADA, properties={"q": "') RETURN 1 //"})])
    assert await store.get_entity(odd) == quote
    assert_path(await store.shortest_path(odd, BOB), 2)
    stats = await store.stats()
    assert (stats.entities, stats.relationships) == (8, 7)


FIXED_SCENARIOS = [
    scenario_entities_round_trip,
    scenario_paths,
    scenario_path_errors,
    scenario_neighbors,
    scenario_updates_and_deletes,
    scenario_missing_ends,
    scenario_memories,
    scenario_hostile_input,
]


# -- random graphs against networkx ----------------------------------------------------------------

TYPES = ("A", "B", "C")


def random_world(
    rng: random.Random, n_entities: int, n_relationships: int
) -> tuple[list[Entity], list[Relationship]]:
    """A random multigraph with self-loops and parallel edges; a third of the relationships are
    valid only within a window of [T0, T0 + 100 days)."""
    ids = [f"n{i}" for i in range(n_entities)]
    entities = [Entity(id=i, type="Node") for i in ids]
    relationships = {}
    for _ in range(n_relationships):
        window = {}
        if rng.random() < 1 / 3:
            start = T0 + timedelta(days=rng.randrange(100))
            window = {"valid_from": start, "valid_to": start + timedelta(days=rng.randrange(1, 50))}
        rel = Relationship(
            source=rng.choice(ids), target=rng.choice(ids), type=rng.choice(TYPES), **window
        )
        relationships[rel.id] = rel
    return entities, list(relationships.values())


def peer_graph(
    relationships: Sequence[Relationship],
    nodes: Sequence[str],
    types: Sequence[str] | None = None,
    as_of: datetime | None = None,
    directed: bool = False,
) -> nx.Graph:
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(
        (r.source, r.target)
        for r in relationships
        if (types is None or r.type in types) and (as_of is None or r.valid_at(as_of))
    )
    return graph


def random_options(rng: random.Random) -> dict:
    options: dict = {}
    if rng.random() < 0.4:
        options["types"] = rng.sample(TYPES, rng.randint(1, 2))
    if rng.random() < 0.4:
        options["as_of"] = T0 + timedelta(days=rng.uniform(-5, 150))
    return options


async def assert_paths_match_networkx(
    store: GraphStore,
    relationships: Sequence[Relationship],
    nodes: Sequence[str],
    rng: random.Random,
    queries: int,
) -> int:
    """Random path queries with random filters; returns how many found a path."""
    found = 0
    for _ in range(queries):
        source, target = rng.choice(nodes), rng.choice(nodes)
        options = random_options(rng)
        options["directed"] = rng.random() < 0.3
        max_hops = rng.randint(1, 6)
        peer = peer_graph(relationships, nodes, **options)
        try:
            length = nx.shortest_path_length(peer, source, target)
        except nx.NetworkXNoPath:
            length = None
        expected = length if length is not None and length <= max_hops else None
        result = await store.shortest_path(source, target, max_hops=max_hops, **options)
        assert_path(result, expected, **options)
        found += expected is not None
    return found


async def assert_neighbors_match_networkx(
    store: GraphStore,
    relationships: Sequence[Relationship],
    nodes: Sequence[str],
    rng: random.Random,
    queries: int,
) -> None:
    for _ in range(queries):
        center, depth = rng.choice(nodes), rng.randint(1, 3)
        options = random_options(rng)
        hood = await store.neighbors(center, depth=depth, limit=10_000, **options)
        peer = peer_graph(relationships, nodes, **options)
        dist = nx.single_source_shortest_path_length(peer, center, cutoff=depth)
        expected = sorted((d, n) for n, d in dist.items() if n != center)
        assert [(n.depth, n.entity.id) for n in hood.neighbors] == expected
        crossed = sorted(
            r.id
            for r in relationships
            if ("types" not in options or r.type in options["types"])
            and ("as_of" not in options or r.valid_at(options["as_of"]))
            and r.source in dist
            and r.target in dist
            and min(dist[r.source], dist[r.target]) < depth
        )
        assert [r.id for r in hood.relationships] == crossed


async def scenario_random_graph(
    store: GraphStore, seed: int, n_entities: int, n_relationships: int, queries: int
) -> None:
    rng = random.Random(seed)
    entities, relationships = random_world(rng, n_entities, n_relationships)
    nodes = [e.id for e in entities]
    await store.upsert_entities(entities)
    await store.upsert_relationships(relationships)
    found = await assert_paths_match_networkx(store, relationships, nodes, rng, queries)
    assert found > queries // 4, "too few queries found a path to test much"
    await assert_neighbors_match_networkx(store, relationships, nodes, rng, queries // 4)
