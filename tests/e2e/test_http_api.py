"""The HTTP contract, over real HTTP against a deployed Akasha."""

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from akasha_ray.client import AkashaClient, AkashaHTTPError
from akasha_ray.embedding import Embedder

pytestmark = pytest.mark.e2e


def _memory(system, content, **extra):
    return {"system_id": system, "conversation_id": f"{system}-c1", "content": content, **extra}


@pytest.fixture(scope="module")
def seeded(admin):
    now = datetime.now(UTC)
    memories = [
        _memory("shop-bot", "My blender arrived broken and I want a refund"),
        _memory("shop-bot", "Where is my parcel? The tracking has not moved in days"),
        _memory("code-bot", "Python raises KeyError when I read the config dict"),
        _memory("code-bot", "The kubernetes pod is stuck in CrashLoopBackOff"),
        _memory(
            "trip-bot",
            "Book me a flight from Lisbon to Tokyo next month",
            created_at=(now - timedelta(days=3)).isoformat(),
            metadata={"lang": "en"},
        ),
    ]
    ids = admin.ingest(memories, progress=False)
    return dict(zip([m["content"][:12] for m in memories], ids, strict=True))


def _http(akasha, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=akasha["url"], headers=headers, timeout=60)


def test_health_says_ok_to_anyone_and_the_components_to_a_key(akasha):
    assert httpx.get(f"{akasha['url']}/healthz").json() == {"status": "ok"}
    headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
    body = httpx.get(f"{akasha['url']}/healthz", headers=headers).json()
    assert body["status"] == "ok"
    assert {"hot-0", "hot-1", "embedder", "keys", "timeseries", "graph", "migrator"} <= set(
        body["components"]
    )
    assert all(c["status"] == "ok" for c in body["components"].values())
    assert httpx.get(f"{akasha['url']}/docs").status_code == 200
    assert "/v1/search" in httpx.get(f"{akasha['url']}/openapi.json").json()["paths"]


def test_ingest_get_search_delete(admin, seeded):
    hits = admin.search("refund for a damaged kitchen appliance", system_ids=["shop-bot"], limit=3)
    assert hits["results"][0]["id"] == seeded["My blender a"]
    assert hits["results"][0]["tier"] == "hot"
    scores = [h["score"] for h in hits["results"]]  # hybrid, the default for text
    assert scores == sorted(scores, reverse=True)
    assert hits["tiers"][0]["tier"] == "hot" and hits["tiers"][0]["hits"] >= 2

    memory = admin.get(seeded["Book me a fl"], "trip-bot")
    assert memory["metadata"] == {"lang": "en"}
    assert memory["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert memory["model_revision"] == Embedder().revision  # the default backend's: onnx
    assert "+onnx." in memory["model_revision"]

    # Re-sending a memory with its created_at (or id) stores nothing new: same id back.
    trip = _memory(
        "trip-bot",
        "Book me a flight from Lisbon to Tokyo next month",
        created_at=memory["created_at"],
        metadata={"lang": "en"},
    )
    assert admin.ingest([trip], progress=False) == [seeded["Book me a fl"]]
    assert admin.ingest([{**trip, "id": "client-id-1"}], progress=False) == ["client-id-1"]
    assert admin.ingest([{**trip, "id": "client-id-1"}], progress=False) == ["client-id-1"]
    admin.delete("client-id-1", "trip-bot")


def test_filters_by_system_and_time(admin, seeded):
    only_code = admin.search("a problem", system_ids=["code-bot"], limit=10)["results"]
    assert {h["system_id"] for h in only_code} == {"code-bot"}
    now = datetime.now(UTC)
    recent = admin.search("flight to Japan", start=now - timedelta(days=1), limit=50)["results"]
    assert seeded["Book me a fl"] not in [h["id"] for h in recent]
    old = admin.search(
        "flight to Japan", system_ids=["trip-bot"], end=now - timedelta(days=1), limit=5
    )["results"]
    assert [h["id"] for h in old] == [seeded["Book me a fl"]]


def test_search_by_vector_matches_search_by_text(admin, seeded):
    from akasha_ray.embedding import Embedder

    vector = Embedder().embed(["refund for a broken blender"])[0]
    by_vector = admin.search(vector=(vector * 3).tolist(), limit=5)["results"]  # any length
    by_text = admin.search("refund for a broken blender", limit=5, mode="vector")["results"]
    assert [h["id"] for h in by_vector] == [h["id"] for h in by_text]
    assert np.allclose(
        [h["similarity"] for h in by_vector], [h["similarity"] for h in by_text], atol=1e-4
    )


def test_delete(admin):
    [memory_id] = admin.ingest([_memory("tmp-bot", "a memory to forget")], progress=False)
    admin.delete(memory_id, "tmp-bot")
    with pytest.raises(AkashaHTTPError) as caught:
        admin.get(memory_id, "tmp-bot")
    assert caught.value.status_code == 404
    with pytest.raises(AkashaHTTPError) as caught:
        admin.delete(memory_id, "tmp-bot")
    assert caught.value.status_code == 404
    assert memory_id not in [h["id"] for h in admin.search("a memory to forget")["results"]]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer  x"])
def test_v1_routes_need_a_valid_key(akasha, header):
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=akasha["url"], headers=headers) as http:
        for method, path, body in [
            ("POST", "/v1/search", {"query": "x"}),
            ("POST", "/v1/memories", {"memories": [_memory("a", "b")]}),
            ("GET", "/v1/memories/abc", None),
            ("DELETE", "/v1/memories/abc", None),
            ("POST", "/v1/keys", {"system_ids": ["a"], "scopes": ["read"]}),
        ]:
            response = http.request(method, path, json=body)
            assert response.status_code == 401, (method, path, response.text)


def test_scoped_keys(akasha, admin, seeded):
    key = admin.create_key(["shop-bot"], ["read", "write"])
    reader = admin.create_key(["code-bot"], ["read"])
    with AkashaClient(akasha["url"], key) as scoped, _http(akasha, key) as http:
        # Search without system_ids covers only its systems.
        results = scoped.search("anything at all", limit=50)["results"]
        assert results and {h["system_id"] for h in results} == {"shop-bot"}
        response = http.post("/v1/search", json={"query": "x", "system_ids": ["code-bot"]})
        assert response.status_code == 403 and response.json()["field"] == "system_ids"
        response = http.post("/v1/memories", json={"memories": [_memory("code-bot", "hi")]})
        assert response.status_code == 403
        assert (
            http.post("/v1/memories", json={"memories": [_memory("shop-bot", "hi")]}).status_code
            == 201
        )
        response = http.post("/v1/keys", json={"system_ids": ["shop-bot"], "scopes": ["read"]})
        assert response.status_code == 403
        # Another system's memory is invisible: 404, not its content.
        assert http.get(f"/v1/memories/{seeded['Python raise']}").status_code == 404
        assert http.delete(f"/v1/memories/{seeded['Python raise']}").status_code == 404
        assert http.get(f"/v1/memories/{seeded['My blender a']}").status_code == 200
    with _http(akasha, reader) as http:
        assert (
            http.post("/v1/memories", json={"memories": [_memory("code-bot", "x")]}).status_code
            == 403
        )
        assert http.post("/v1/search", json={"query": "pod"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/search", {"vector": [0.1] * 10}, "vector"),
        ("/v1/search", {"vector": [0.1] * 384, "query": "x"}, "vector"),
        ("/v1/search", {}, "vector"),
        ("/v1/search", {"query": "x", "limit": 0}, "limit"),
        ("/v1/search", {"query": "x", "limit": 5000}, "limit"),
        (
            "/v1/search",
            {"query": "x", "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "end",
        ),
        ("/v1/search", {"query": "x", "start": "yesterday"}, "start"),
        ("/v1/search", {"query": "x", "colour": "red"}, "colour"),
        ("/v1/memories", {"memories": [_memory("a", "")]}, "content"),
        ("/v1/memories", {"memories": [_memory("a", "x", extra=1)]}, "extra"),
        ("/v1/memories", {"memories": [_memory("a", "x")] * 1001}, "memories"),
        ("/v1/memories", {"memories": []}, "memories"),
        ("/v1/memories", {"memories": [_memory("bad system!", "x")]}, "system_id"),
        ("/v1/memories", {"memories": [_memory("a", "x", created_at="2026-01-01")]}, "created_at"),
        ("/v1/keys", {"system_ids": ["a"], "scopes": ["delete"]}, "scopes"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(akasha, path, body, field):
    with _http(akasha, akasha["admin_key"]) as http:
        response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    fields = [str(part) for error in response.json()["detail"] for part in error["loc"]]
    assert field in fields


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b"null", b'"text"', b'{"memories": "many"}']
)
def test_malformed_bodies_are_4xx_never_500(akasha, raw):
    with _http(akasha, akasha["admin_key"]) as http:
        for path in ("/v1/memories", "/v1/search", "/v1/keys"):
            response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (path, raw, response.text)
