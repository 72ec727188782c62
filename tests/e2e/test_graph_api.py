"""The knowledge graph over HTTP: upserts, paths (checked against networkx), neighbours,
memories that mention entities (paginated), ownership by system, and hostile input."""

import random

import httpx
import networkx as nx
import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http(akasha):
    headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
    with httpx.Client(base_url=akasha["url"], headers=headers, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def graph(http):
    rng = random.Random(5)
    ids = [f"e2e:{i}" for i in range(60)]
    edges = {(rng.choice(ids), rng.choice(ids)) for _ in range(90)}
    edges = [(a, b) for a, b in edges if a != b]
    entities = [{"id": i, "type": "Thing", "properties": {"n": k}} for k, i in enumerate(ids)]
    assert http.post("/v1/graph/entities", json={"entities": entities}).status_code == 201
    relationships = [{"source": a, "target": b, "type": "LINKS"} for a, b in edges]
    response = http.post("/v1/graph/relationships", json={"relationships": relationships})
    assert response.status_code == 201, response.text
    peer = nx.Graph()
    peer.add_nodes_from(ids)
    peer.add_edges_from(edges)
    return ids, peer


def test_paths_equal_networkx(http, graph):
    ids, peer = graph
    rng = random.Random(9)
    for _ in range(25):
        source, target = rng.choice(ids), rng.choice(ids)
        body = http.get("/v1/graph/path", params={"source": source, "target": target}).json()
        try:
            expected = nx.shortest_path_length(peer, source, target)
        except nx.NetworkXNoPath:
            expected = None
        if expected is None or expected > 5:
            assert body["path"] is None
        else:
            assert len(body["path"]) - 1 == expected
            assert body["path"][0] == source and body["path"][-1] == target
            assert len(body["relationships"]) == expected


def test_entity_neighbors_and_delete(http, graph):
    ids, peer = graph
    entity = http.get(f"/v1/graph/entities/{ids[0]}").json()
    # Written by the admin without a system: shared.
    assert entity == {"id": ids[0], "type": "Thing", "properties": {"n": 0}, "system_id": None}
    body = http.get(f"/v1/graph/entities/{ids[0]}/neighbors", params={"depth": 1}).json()
    assert {n["entity"]["id"] for n in body["neighbors"]} == set(peer.neighbors(ids[0]))
    assert http.get("/v1/graph/entities/e2e:nobody").status_code == 404
    assert (
        http.post(
            "/v1/graph/entities", json={"entities": [{"id": "e2e:gone", "type": "T"}]}
        ).status_code
        == 201
    )
    assert http.delete("/v1/graph/entities/e2e:gone").status_code == 204
    assert http.delete("/v1/graph/entities/e2e:gone").status_code == 404


def test_memories_mentioning_an_entity(http, admin):
    # The same client id in another system, mentioning the same entity: another memory.
    admin.ingest(
        [
            {
                "id": "dup-1",
                "system_id": "graph-other",
                "conversation_id": "g1",
                "entities": ["person:ada"],
                "content": "Ada again, elsewhere",
            }
        ],
        progress=False,
    )
    ids = admin.ingest(
        [
            {
                "system_id": "graph-bot",
                "conversation_id": "g1",
                "entities": ["person:ada"],
                "content": "Ada Lovelace wrote the first program for the Analytical Engine",
            },
            {
                "system_id": "graph-bot",
                "conversation_id": "g1",
                "entities": ["person:ada", "org:acme"],
                "content": "Ada joined Acme as chief engineer",
            },
            {
                "system_id": "graph-bot",
                "conversation_id": "g1",
                "content": "Grace Hopper wrote the first compiler",
            },
        ],
        progress=False,
    )
    params = {"system_id": "graph-bot"}
    listed = http.get("/v1/graph/entities/person:ada/memories", params=params).json()
    assert {m["id"] for m in listed["memories"]} == set(ids[:2])
    assert listed["next_cursor"] is None
    everyone = http.get("/v1/graph/entities/person:ada/memories").json()["memories"]
    assert {(m["system_id"], m["id"]) for m in everyone} == {
        ("graph-bot", ids[0]),
        ("graph-bot", ids[1]),
        ("graph-other", "dup-1"),
    }
    hits = admin.search("who wrote the first program", limit=10)["results"]
    assert ids[2] in [h["id"] for h in hits]
    response = http.post(
        "/v1/search",
        json={
            "query": "who wrote the first program",
            "entity_id": "person:ada",
            "system_ids": ["graph-bot"],
        },
    )
    assert response.status_code == 200, response.text
    only_ada = response.json()["results"]
    assert {h["id"] for h in only_ada} == set(ids[:2])
    admin.delete(ids[1], "graph-bot")
    listed = http.get("/v1/graph/entities/org:acme/memories").json()["memories"]
    assert listed == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "a", "target": "b", "max_hops": 0}, "max_hops"),
        ({"source": "a", "target": "b", "max_hops": 11}, "max_hops"),
        ({"source": "a", "target": "b", "max_hops": "five"}, "max_hops"),
        ({"source": "a", "target": "b", "types": "KNOWS]->(x) DETACH DELETE x //"}, "types"),
        ({"source": "a", "target": "b", "types": "KNOWS,`x`"}, "types"),
        ({"source": "a) DETACH DELETE (n", "target": "b"}, "source"),
        ({"source": "a"}, "target"),
    ],
)
def test_bad_path_queries_are_422(http, params, field):
    response = http.get("/v1/graph/path", params=params)
    assert response.status_code == 422, response.text
    assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]


def test_unknown_entity_in_a_path_is_404(http, graph):
    ids, _ = graph
    response = http.get("/v1/graph/path", params={"source": ids[0], "target": "e2e:missing"})
    assert response.status_code == 404, response.text


def test_hostile_ids_are_refused_and_the_graph_survives(http, graph):
    ids, _ = graph
    for hostile in ["x'}) DETACH DELETE n //", "a b", "", "é" * 3]:
        response = http.post(
            "/v1/graph/entities", json={"entities": [{"id": hostile, "type": "T"}]}
        )
        assert response.status_code == 422
    response = http.post(
        "/v1/graph/relationships",
        json={
            "relationships": [{"source": ids[0], "target": ids[1], "type": "X`]-() DELETE x //"}]
        },
    )
    assert response.status_code == 422
    assert http.get(f"/v1/graph/entities/{ids[1]}").status_code == 200


# -- ownership -------------------------------------------------------------------------------------


def _key(http, systems, scopes=("read", "write")):
    response = http.post("/v1/keys", json={"system_ids": systems, "scopes": list(scopes)})
    assert response.status_code == 201, response.text
    return response.json()["key"]


@pytest.fixture(scope="module")
def as_key(akasha, http):
    """A client per key: `as_key["ga"]` holds system ga only, `as_key["both"]` ga and gb."""
    clients = {}
    for name, systems in (("ga", ["ga"]), ("gb", ["gb"]), ("both", ["ga", "gb"])):
        headers = {"Authorization": f"Bearer {_key(http, systems)}"}
        clients[name] = httpx.Client(base_url=akasha["url"], headers=headers, timeout=60)
    yield clients
    for client in clients.values():
        client.close()


def _post(client, route, items):
    name = route.rsplit("/", 1)[-1]
    return client.post(f"/v1/graph/{route}", json={name: items})


def _fields(response):
    return [".".join(str(p) for p in e["loc"]) for e in response.json()["detail"]]


def test_two_systems_own_the_same_entity_id(http, as_key):
    ga, gb = as_key["ga"], as_key["gb"]
    alice = {"id": "person:alice", "type": "Person"}
    assert _post(ga, "entities", [{**alice, "properties": {"of": "ga"}}]).status_code == 201
    assert _post(gb, "entities", [{**alice, "properties": {"of": "gb"}}]).status_code == 201
    assert _post(gb, "entities", [{"id": "gb:only", "type": "Secret"}]).status_code == 201
    assert ga.get("/v1/graph/entities/person:alice").json() == {
        **alice,
        "properties": {"of": "ga"},
        "system_id": "ga",
    }
    assert gb.get("/v1/graph/entities/person:alice").json()["properties"] == {"of": "gb"}

    # Another system's entity answers exactly as an unknown one.
    hidden, unknown = ga.get("/v1/graph/entities/gb:only"), ga.get("/v1/graph/entities/gb:none")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["message"].replace("only", "none") == unknown.json()["message"]
    assert ga.get("/v1/graph/entities/gb:only/neighbors").status_code == 404
    assert ga.delete("/v1/graph/entities/gb:only").status_code == 404
    assert gb.get("/v1/graph/entities/gb:only").status_code == 200
    response = ga.get("/v1/graph/path", params={"source": "person:alice", "target": "gb:only"})
    assert response.status_code == 404

    # Writing into another system: 403 naming the field.
    response = _post(ga, "entities", [{**alice, "system_id": "gb"}])
    assert response.status_code == 403 and _fields(response) == ["entities.system_id"]
    rel = {"source": "person:alice", "target": "person:alice", "type": "SELF", "system_id": "gb"}
    response = _post(ga, "relationships", [rel])
    assert response.status_code == 403 and _fields(response) == ["relationships.system_id"]
    # A key of two systems names which one.
    response = _post(as_key["both"], "entities", [alice])
    assert response.status_code == 422 and _fields(response) == ["entities.system_id"]
    response = as_key["both"].get("/v1/graph/entities/person:alice")
    assert response.status_code == 422 and _fields(response) == ["system_id"]
    response = as_key["both"].get("/v1/graph/entities/person:alice", params={"system_id": "gb"})
    assert response.json()["properties"] == {"of": "gb"}
    # A relationship to another system's entity: its end is unknown.
    response = _post(ga, "relationships", [{**rel, "system_id": None, "target": "gb:only"}])
    assert response.status_code == 404

    # A delete takes one system's entity only.
    assert gb.delete("/v1/graph/entities/person:alice").status_code == 204
    assert ga.get("/v1/graph/entities/person:alice").status_code == 200
    assert gb.get("/v1/graph/entities/person:alice").status_code == 404


def test_shared_entities_and_paths_through_another_system(http, as_key):
    ga, gb = as_key["ga"], as_key["gb"]
    shared = [{"id": "hub:x", "type": "Hub"}, {"id": "hub:y", "type": "Hub"}]
    assert _post(http, "entities", shared).status_code == 201  # the admin: shared
    assert ga.get("/v1/graph/entities/hub:x").json()["system_id"] is None
    assert gb.get("/v1/graph/entities/hub:y").status_code == 200
    assert ga.delete("/v1/graph/entities/hub:x").status_code == 404  # not ga's to delete
    nodes = [{"id": "a:one", "type": "Node"}, {"id": "a:two", "type": "Node"}]
    assert _post(ga, "entities", nodes).status_code == 201
    links = [
        {"source": "a:one", "target": "hub:x", "type": "LINK"},
        {"source": "hub:y", "target": "a:two", "type": "LINK"},
    ]
    assert _post(ga, "relationships", links).status_code == 201
    bridge = [{"source": "hub:x", "target": "hub:y", "type": "LINK"}]
    assert _post(gb, "relationships", bridge).status_code == 201

    ends = {"source": "a:one", "target": "a:two"}
    body = ga.get("/v1/graph/path", params=ends).json()
    assert (body["path"], body["truncated"]) == (None, False)
    body = http.get("/v1/graph/path", params={**ends, "system_id": "ga"}).json()
    assert body["path"] == ["a:one", "hub:x", "hub:y", "a:two"]
    assert body["systems"] == ["ga", None, None, "ga"]
    assert [r["system_id"] for r in body["relationships"]] == ["ga", "gb", "ga"]
    body = as_key["both"].get("/v1/graph/path", params={**ends, "system_id": "ga"}).json()
    assert len(body["path"]) == 4

    hood = ga.get("/v1/graph/entities/hub:x/neighbors", params={"depth": 3}).json()
    assert [n["entity"]["id"] for n in hood["neighbors"]] == ["a:one"]
    assert hood["truncated"] is False
    hood = http.get("/v1/graph/entities/hub:x/neighbors", params={"depth": 2}).json()
    # Nearest first; ties by owner (shared first), then id.
    assert [n["entity"]["id"] for n in hood["neighbors"]] == ["hub:y", "a:one", "a:two"]
    # gb sees its bridge, not ga's entities behind it.
    hood = gb.get("/v1/graph/entities/hub:x/neighbors", params={"depth": 3}).json()
    assert [n["entity"]["id"] for n in hood["neighbors"]] == ["hub:y"]


def test_entity_memories_come_in_pages(http, admin, as_key):
    memories = [
        {
            "id": f"page-{i}",
            "system_id": system,
            "conversation_id": "pages",
            "entities": ["topic:pages"],
            "content": f"memory {i} about pages",
        }
        for system in ("ga", "gb")
        for i in range(7)
    ]
    admin.ingest(memories, progress=False)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = as_key["ga"].get("/v1/graph/entities/topic:pages/memories", params=params).json()
        assert len(body["memories"]) <= 3
        seen += [(m["system_id"], m["id"]) for m in body["memories"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [("ga", f"page-{i}") for i in range(7)]
    body = http.get("/v1/graph/entities/topic:pages/memories", params={"limit": 1000}).json()
    assert len(body["memories"]) == 14 and body["next_cursor"] is None
    response = as_key["ga"].get(
        "/v1/graph/entities/topic:pages/memories", params={"system_id": "gb"}
    )
    assert response.status_code == 403 and _fields(response) == ["system_id"]
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "no-system"}, "cursor"),
        ({"cursor": "a b/c"}, "cursor"),
    ):
        response = http.get("/v1/graph/entities/topic:pages/memories", params=params)
        assert response.status_code == 422, (params, response.text)
        assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]
