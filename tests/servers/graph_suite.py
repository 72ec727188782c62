"""The graph congruence suite: scenarios every `GraphStore` must answer identically, with networkx
as the independent peer for path lengths and neighbourhoods on random graphs.

Used by tests/unit/test_graph_duckdb.py (DuckDB) and tests/integration/test_graph_bolt.py (DuckDB
and FalkorDB over Bolt, the same assertions). The fixed scenarios cover ownership (two systems'
entities of the same id, shared entities, a path that exists only through another system's
relationship), memory links by memory key with pagination, and the frontier cap.
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
from akasha_ray.identity import memory_key

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

    await store.link_memories({"bot/mem-1": [ACME, ADA]})
    assert await store.delete_entity(ACME) is True
    assert await store.delete_entity(ACME) is False
    assert await store.get_entity(ACME) is None
    assert await store.entity_memories(ACME) == ([], None)
    assert await store.entity_memories(ADA) == (["bot/mem-1"], None)
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


M1 = "0190a1b2-0000-7000-8000-000000000001"
M2 = "0190a1b2-0000-7000-8000-000000000002"


async def scenario_memories(store: GraphStore) -> None:
    """Links keyed by (system_id, id): the same memory id in two systems is two memories."""
    await load_small_world(store)
    a1, a2, b2 = memory_key("a", M1), memory_key("a", M2), memory_key("b", M2)
    assert await store.link_memories({a2: [ADA, BOB], b2: [ADA]}) == 3
    assert await store.link_memories({a2: [ADA, CY, CY], a1: [ADA]}) == 2
    assert await store.link_memories({memory_key("a", "m-3"): []}) == 0
    assert await store.link_memories({}) == 0
    # Entities need not exist yet: ingest names them before the graph knows them.
    assert await store.link_memories({"a/m-9": ["person:zed"]}) == 1
    assert await store.entity_memories(ADA) == ([a1, a2, b2], None)
    assert await store.entity_memories(ADA, ["a"]) == ([a1, a2], None)
    assert await store.entity_memories(ADA, ["b"]) == ([b2], None)
    assert await store.entity_memories(ADA, ["c"]) == ([], None)
    assert await store.entity_memories(ADA, []) == ([], None)
    assert await store.entity_memories("person:zed") == (["a/m-9"], None)
    assert (await store.stats()).memory_links == 6
    assert await store.unlink_memory(a2) == 3
    assert await store.unlink_memory(a2) == 0
    assert await store.entity_memories(ADA) == ([a1, b2], None)  # b's copy of the id stays
    assert await store.entity_memories(BOB) == ([], None)
    for bad in [*HOSTILE_IDS, "m-1", "a/b/c", "/m-1", "a/", "a b/m-1", "é/m-1"]:
        with pytest.raises(InvalidInput):
            await store.link_memories({bad: [ADA]})
        with pytest.raises(InvalidInput):
            await store.unlink_memory(bad)
        with pytest.raises(InvalidInput):
            await store.entity_memories(ADA, after=bad)
    for bad in HOSTILE_IDS:
        with pytest.raises(InvalidInput):
            await store.link_memories({a1: [bad]})
        with pytest.raises(InvalidInput):
            await store.entity_memories(bad)
        with pytest.raises(InvalidInput):
            await store.entity_memories(ADA, [bad])
    with pytest.raises(InvalidInput):
        await store.link_memories({a1: ADA})  # a string, not a list of ids
    with pytest.raises(InvalidInput):
        await store.link_memories([(a1, [ADA])])
    with pytest.raises(InvalidInput):
        await store.entity_memories(ADA, "a")
    for limit in (0, 100_001, True, "5"):
        with pytest.raises(InvalidInput):
            await store.entity_memories(ADA, limit=limit)
    assert (await store.stats()).memory_links == 3


async def scenario_memory_pages(store: GraphStore) -> None:
    """Pages follow key order; the cursor resumes exactly after the last key; systems filter."""
    keys = [memory_key("a", f"m-{i:03d}") for i in range(23)]
    other = [memory_key("b", f"m-{i:03d}") for i in range(5)]
    assert await store.link_memories({k: [PARIS] for k in keys + other}) == 28
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = await store.entity_memories(PARIS, ["a"], after=cursor, limit=10)
        seen += page
        pages += 1
        if cursor is None:
            break
        assert page[-1] == cursor and len(page) == 10
    assert (seen, pages) == (keys, 3)
    # Exactly one page: no cursor to a page that would be empty.
    assert await store.entity_memories(PARIS, ["b"], limit=5) == (other, None)
    page, cursor = await store.entity_memories(PARIS, limit=25)
    assert (page, cursor) == (keys + other[:2], other[1])
    assert await store.entity_memories(PARIS, after=cursor) == (other[2:], None)


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


# -- ownership ------------------------------------------------------------------------------------

ALICE, BOBBY = "person:alice", "person:bobby"
A1, A2, X, Y = "a:one", "a:two", "hub:x", "hub:y"


async def scenario_ownership(store: GraphStore) -> None:
    """Two systems' entities of the same id are two entities; shared ones are read by all."""
    await store.upsert_entities(
        [
            Entity(id=ALICE, type="Person", properties={"of": "a"}, system_id="a"),
            Entity(id=ALICE, type="Person", properties={"of": "b"}, system_id="b"),
            Entity(id=BOBBY, type="Person", system_id="b"),
            Entity(id=PARIS, type="Place"),
        ]
    )
    alice_a = await store.get_entity(ALICE, "a")
    assert (alice_a.system_id, alice_a.properties) == ("a", {"of": "a"})
    assert (await store.get_entity(ALICE, "b")).properties == {"of": "b"}
    assert await store.get_entity(ALICE) is None  # no shared alice
    assert await store.get_entity(ALICE, "c") is None
    assert await store.get_entity(PARIS, "a") == Entity(id=PARIS, type="Place")
    assert await store.get_entity(BOBBY, "a") is None  # b's: as unknown as a missing one

    lives_a = Relationship(source=ALICE, target=PARIS, type="LIVES_IN", system_id="a")
    lives_b = Relationship(source=ALICE, target=PARIS, type="LIVES_IN", system_id="b")
    assert lives_a.id != lives_b.id
    assert await store.upsert_relationships([lives_a, lives_b]) == 2
    # b re-sends its alice: a's is untouched.
    await store.upsert_entities([Entity(id=ALICE, type="Robot", system_id="b")])
    assert (await store.get_entity(ALICE, "a")) == alice_a
    assert (await store.stats()).entities == 4

    hood = await store.neighbors(PARIS, system_id="a", visible=["a"])
    assert [(n.entity.id, n.entity.system_id) for n in hood.neighbors] == [(ALICE, "a")]
    assert hood.relationships == [lives_a]
    hood = await store.neighbors(PARIS)  # the admin: everything
    assert [(n.entity.system_id, n.entity.type) for n in hood.neighbors] == [
        ("a", "Person"),
        ("b", "Robot"),
    ]
    assert {r.id for r in hood.relationships} == {lives_a.id, lives_b.id}
    path = await store.shortest_path(ALICE, PARIS, system_id="a", visible=["a"])
    assert (path.path, path.systems, path.relationships) == ([ALICE, PARIS], ["a", None], [lives_a])

    # Ends are the system's own entities or shared ones, never another system's.
    with pytest.raises(NotFound) as err:
        await store.upsert_relationships(
            [Relationship(source=ALICE, target=BOBBY, type="KNOWS", system_id="a")]
        )
    assert BOBBY in err.value.message
    with pytest.raises(NotFound):  # a shared relationship joins shared entities only
        await store.upsert_relationships([Relationship(source=PARIS, target=ALICE, type="HAS")])
    with pytest.raises(NotFound) as err:
        await store.neighbors(BOBBY, system_id="a", visible=["a"])
    assert err.value.field == "id"
    with pytest.raises(NotFound):
        await store.shortest_path(ALICE, BOBBY, system_id="a", visible=["a"])

    # A delete takes exactly one system's entity, its relationships and that system's links.
    await store.link_memories({"a/m-1": [ALICE], "b/m-1": [ALICE]})
    assert await store.delete_entity(ALICE, "c") is False
    assert await store.delete_entity(ALICE) is False  # no shared alice
    assert await store.delete_entity(ALICE, "b") is True
    assert await store.get_entity(ALICE, "b") is None
    assert await store.get_entity(ALICE, "a") == alice_a
    assert await store.entity_memories(ALICE) == (["a/m-1"], None)
    assert (await store.stats()).relationships == 1
    assert [n.entity.system_id for n in (await store.neighbors(PARIS)).neighbors] == ["a"]

    # A system's own entity comes before a shared one of the same id, for it alone.
    await store.upsert_entities([Entity(id=ALICE, type="Statue")])
    assert (await store.get_entity(ALICE, "a")).type == "Person"
    assert (await store.get_entity(ALICE, "b")).type == "Statue"
    assert (await store.get_entity(ALICE)).type == "Statue"
    # Deleting the shared one keeps a's links (they meant a's own alice) and drops b's.
    await store.link_memories({"b/m-2": [ALICE]})
    assert await store.delete_entity(ALICE) is True
    assert await store.entity_memories(ALICE) == (["a/m-1"], None)
    for bad in ("a b", "", "*", "x/y", "é"):
        with pytest.raises(InvalidInput):
            await store.get_entity(PARIS, bad)
        with pytest.raises(InvalidInput):
            await store.neighbors(PARIS, system_id=bad)
        with pytest.raises(InvalidInput):
            await store.neighbors(PARIS, visible=[bad])
        with pytest.raises(InvalidInput):
            await store.shortest_path(PARIS, PARIS, system_id=bad)
        with pytest.raises(InvalidInput):
            await store.shortest_path(PARIS, PARIS, visible=[bad])
        with pytest.raises(InvalidInput):
            await store.delete_entity(PARIS, bad)
    with pytest.raises(InvalidInput):
        await store.neighbors(PARIS, visible="a")

    # a's relationship to the shared rome, sent again once a has a rome of its own, moves there
    # (the same id: no second copy).
    rome = "place:rome"
    await store.upsert_entities([Entity(id=rome, type="Place")])
    visits = Relationship(source=ALICE, target=rome, type="VISITS", system_id="a")
    await store.upsert_relationships([visits])
    before = (await store.stats()).relationships
    await store.upsert_entities([Entity(id=rome, type="Place", system_id="a")])
    await store.upsert_relationships([visits])
    assert (await store.stats()).relationships == before
    assert (await store.neighbors(rome)).neighbors == []  # the shared rome
    hood = await store.neighbors(rome, system_id="a")
    assert [(n.entity.id, n.entity.system_id) for n in hood.neighbors] == [(ALICE, "a")]


async def scenario_path_through_another_system(store: GraphStore) -> None:
    """a:one - x (a's), x - y (b's), y - a:two (a's): a's key finds no path from one to two; the
    admin, or a key that holds both systems, does."""
    await store.upsert_entities(
        [
            Entity(id=A1, type="Node", system_id="a"),
            Entity(id=A2, type="Node", system_id="a"),
            Entity(id=X, type="Hub"),
            Entity(id=Y, type="Hub"),
        ]
    )
    via_b = Relationship(source=X, target=Y, type="LINK", system_id="b")
    await store.upsert_relationships(
        [
            Relationship(source=A1, target=X, type="LINK", system_id="a"),
            via_b,
            Relationship(source=Y, target=A2, type="LINK", system_id="a"),
        ]
    )
    for directed in (False, True):
        found = await store.shortest_path(A1, A2, directed=directed, system_id="a", visible=["a"])
        assert (found.path, found.truncated) == (None, False)
        found = await store.shortest_path(A1, A2, directed=directed, system_id="a")
        assert_path(found, 3, directed=directed)
        assert found.systems == ["a", None, None, "a"]
        assert found.relationships[1] == via_b
        found = await store.shortest_path(
            A1, A2, directed=directed, system_id="a", visible=["a", "b"]
        )
        assert_path(found, 3, directed=directed)
    hood = await store.neighbors(A1, depth=3, system_id="a", visible=["a"])
    assert [n.entity.id for n in hood.neighbors] == [X]
    hood = await store.neighbors(A1, depth=3, system_id="a")
    assert [n.entity.id for n in hood.neighbors] == [X, Y, A2]
    # b's key cannot name a's entities at all.
    with pytest.raises(NotFound) as err:
        await store.shortest_path(A1, X, system_id="b", visible=["b"])
    assert err.value.field == "source"
    assert_path(await store.shortest_path(X, Y, system_id="b", visible=["b"]), 1)
    assert_path(await store.shortest_path(X, Y, system_id="a", visible=["a"]), None)


async def scenario_frontier_cap(store: GraphStore) -> None:
    """s and t each have 40 leaves; one leaf of each meets at m (s-l7-m-r7-t). With the cap at
    30, the first level already reaches 40: the search stops, says truncated, and finds no path;
    with room it finds the path."""
    leaves_s = [f"l{i:02d}" for i in range(40)]
    leaves_t = [f"r{i:02d}" for i in range(40)]
    ids = ["s", "t", "m", *leaves_s, *leaves_t]
    await store.upsert_entities([Entity(id=i, type="Node", system_id="a") for i in ids])

    def link(source: str, target: str) -> Relationship:
        return Relationship(source=source, target=target, type="L", system_id="a")

    await store.upsert_relationships(
        [link("s", leaf) for leaf in leaves_s]
        + [link(leaf, "t") for leaf in leaves_t]
        + [link("l07", "m"), link("m", "r07")]
    )
    scope = {"system_id": "a", "visible": ["a"]}
    store.max_frontier = 30
    stopped = await store.shortest_path("s", "t", **scope)
    assert (stopped.path, stopped.truncated) == (None, True)
    # One hop: nothing was left to search, so nothing was cut.
    one = await store.shortest_path("s", "t", max_hops=1, **scope)
    assert (one.path, one.truncated) == (None, False)
    hood = await store.neighbors("s", depth=3, **scope)
    assert hood.truncated
    assert [(n.entity.id, n.depth) for n in hood.neighbors] == [(leaf, 1) for leaf in leaves_s]
    hood = await store.neighbors("s", depth=1, **scope)
    assert not hood.truncated and len(hood.neighbors) == 40

    store.max_frontier = 1000
    found = await store.shortest_path("s", "t", **scope)
    assert_path(found, 4)
    assert found.truncated is False and found.path[1:4] == ["l07", "m", "r07"]
    hood = await store.neighbors("s", depth=3, **scope)
    assert not hood.truncated
    assert [(n.entity.id, n.depth) for n in hood.neighbors][-2:] == [("m", 2), ("r07", 3)]


FIXED_SCENARIOS = [
    scenario_entities_round_trip,
    scenario_paths,
    scenario_path_errors,
    scenario_neighbors,
    scenario_updates_and_deletes,
    scenario_missing_ends,
    scenario_memories,
    scenario_memory_pages,
    scenario_hostile_input,
    scenario_ownership,
    scenario_path_through_another_system,
    scenario_frontier_cap,
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
