"""A memory is (system_id, id), over HTTP: the same client id in two systems is two memories,
a resend is a no-op, other content under a stored key is a 409 to its owner, a batch is stored
whole or not at all, and a delete is final."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _memory(system, memory_id, content, **extra):
    return {
        "id": memory_id,
        "system_id": system,
        "conversation_id": "identity",
        "content": content,
        **extra,
    }


@pytest.fixture(scope="module")
def clients(akasha, admin):
    """HTTP clients for two systems' scoped keys, and the admin's."""
    made = {}
    for system in ("ident-a", "ident-b"):
        key = admin.create_key([system], ["read", "write"])
        made[system] = httpx.Client(
            base_url=akasha["url"], headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
    made["admin"] = httpx.Client(
        base_url=akasha["url"],
        headers={"Authorization": f"Bearer {akasha['admin_key']}"},
        timeout=60,
    )
    yield made
    for client in made.values():
        client.close()


def _post(client, *memories):
    return client.post("/v1/memories", json={"memories": list(memories)})


@pytest.mark.parametrize("age_days", [0, 30, 400], ids=["hot", "warm", "cold"])
def test_the_same_id_in_two_systems_is_two_memories(clients, age_days):
    a, b = clients["ident-a"], clients["ident-b"]
    at = (datetime.now(UTC) - timedelta(days=age_days)).isoformat()
    memory_id = f"msg-{age_days}"
    first = _post(b, _memory("ident-b", memory_id, "b's words about tea", created_at=at))
    assert first.status_code == 201, first.text
    # Another system's use of the id neither blocks nor reveals anything: a plain 201.
    second = _post(a, _memory("ident-a", memory_id, "a's words about coffee", created_at=at))
    assert second.status_code == 201, second.text
    assert second.json()["ids"] == [memory_id]

    # Each key reads its own memory; the system may be left out (each key holds one).
    mine = a.get(f"/v1/memories/{memory_id}").json()
    theirs = b.get(f"/v1/memories/{memory_id}").json()
    assert (mine["system_id"], mine["content"]) == ("ident-a", "a's words about coffee")
    assert (theirs["system_id"], theirs["content"]) == ("ident-b", "b's words about tea")
    # The admin names the system; without it, a 422 naming the field.
    admin = clients["admin"]
    response = admin.get(f"/v1/memories/{memory_id}")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["system_id"]
    response = admin.get(f"/v1/memories/{memory_id}", params={"system_id": "ident-b"})
    assert response.json()["content"] == "b's words about tea"
    # A scoped key naming another system: refused, whatever that system holds.
    assert a.get(f"/v1/memories/{memory_id}", params={"system_id": "ident-b"}).status_code == 403

    # Both are searchable, each by its owner only; the admin sees both under one id.
    body = {"query": "words about drinks", "limit": 50, "include_cold": True}
    found = a.post("/v1/search", json=body).json()["results"]
    assert {(h["system_id"], h["content"]) for h in found if h["id"] == memory_id} == {
        ("ident-a", "a's words about coffee")
    }
    found = admin.post("/v1/search", json={**body, "system_ids": ["ident-a", "ident-b"]}).json()[
        "results"
    ]
    assert sorted(h["system_id"] for h in found if h["id"] == memory_id) == ["ident-a", "ident-b"]

    # A's delete takes A's memory only.
    assert a.delete(f"/v1/memories/{memory_id}").status_code == 204
    assert a.get(f"/v1/memories/{memory_id}").status_code == 404
    assert b.get(f"/v1/memories/{memory_id}").json()["content"] == "b's words about tea"


def test_a_resend_is_a_no_op_and_other_content_is_a_conflict(clients):
    a = clients["ident-a"]
    at = datetime.now(UTC).isoformat()
    original = _memory("ident-a", "resent-1", "the first words", created_at=at)
    assert _post(a, original).status_code == 201
    again = _post(a, original)
    assert again.status_code == 201 and again.json()["ids"] == ["resent-1"]
    changed = _post(a, {**original, "content": "other words"})
    assert changed.status_code == 409, changed.text
    assert a.get("/v1/memories/resent-1").json()["content"] == "the first words"


def test_a_batch_with_a_conflict_stores_nothing(clients):
    a = clients["ident-a"]
    at = datetime.now(UTC).isoformat()
    assert _post(a, _memory("ident-a", "held-1", "already here", created_at=at)).status_code == 201
    response = _post(
        a,
        _memory("ident-a", "fresh-1", "would be new", created_at=at),
        _memory("ident-a", "held-1", "but this one clashes", created_at=at),
    )
    assert response.status_code == 409, response.text
    assert a.get("/v1/memories/fresh-1").status_code == 404  # the batch is all or nothing
    # The same id twice in one batch with other content is refused too.
    response = _post(
        a,
        _memory("ident-a", "twice-1", "one text", created_at=at),
        _memory("ident-a", "twice-1", "another text", created_at=at),
    )
    assert response.status_code == 409
    assert a.get("/v1/memories/twice-1").status_code == 404


@pytest.mark.parametrize("age_days", [0, 30], ids=["hot", "warm"])
def test_a_delete_is_final(clients, age_days):
    a = clients["ident-a"]
    at = (datetime.now(UTC) - timedelta(days=age_days)).isoformat()
    memory = _memory("ident-a", f"gone-{age_days}", "a secret to forget forever", created_at=at)
    assert _post(a, memory).status_code == 201
    assert a.delete(f"/v1/memories/gone-{age_days}").status_code == 204
    assert a.get(f"/v1/memories/gone-{age_days}").status_code == 404
    assert a.delete(f"/v1/memories/gone-{age_days}").status_code == 404
    # Sending it again (a late retry, an older copy) does not bring it back.
    again = _post(a, memory)
    assert again.status_code == 409, again.text
    assert a.get(f"/v1/memories/gone-{age_days}").status_code == 404
    body = {"query": "a secret to forget forever", "limit": 50, "include_cold": True}
    found = a.post("/v1/search", json=body).json()["results"]
    assert f"gone-{age_days}" not in [h["id"] for h in found]
