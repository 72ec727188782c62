"""Search modes over real HTTP: vector, keyword (BM25) and hybrid (fused), their scores, filters,
deletes, and the 422 naming `mode` for a keyword search without text."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e

SYSTEM = "modes-bot"


def _http(akasha):
    headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
    return httpx.Client(base_url=akasha["url"], headers=headers, timeout=60)


@pytest.fixture(scope="module")
def http(akasha):
    now = datetime.now(UTC)
    texts = {
        "k1": "Order XJ-4471 shipped with the courier on Monday",
        "k2": "My cat Miso loves the sunny windowsill",
        "k3": "The blender I bought is broken and I want a refund",
        "k4": "Miso knocked the plant off the shelf again",
    }
    memories = [
        {
            "id": memory_id,
            "system_id": SYSTEM if memory_id != "k4" else f"{SYSTEM}-2",
            "conversation_id": "c1",
            "content": text,
            "created_at": (now - timedelta(hours=n)).isoformat(),
        }
        for n, (memory_id, text) in enumerate(texts.items())
    ]
    with _http(akasha) as client:
        response = client.post("/v1/memories", json={"memories": memories})
        assert response.status_code == 201, response.text
        yield client


def search(http, **body):
    response = http.post("/v1/search", json={"system_ids": [SYSTEM], **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_keyword_finds_a_rare_token_and_scores_bm25(http):
    found = search(http, query="xj-4471", mode="keyword")
    assert [h["id"] for h in found["results"]] == ["k1"]
    [hit] = found["results"]
    assert hit["similarity"] is None and hit["score"] > 0 and not found["partial"]


def test_keyword_applies_the_system_filter_before_ranking(http):
    found = search(http, query="Miso", mode="keyword")
    assert [h["id"] for h in found["results"]] == ["k2"]  # k4 is another system's
    both = http.post(
        "/v1/search",
        json={"query": "miso", "mode": "keyword", "system_ids": [SYSTEM, f"{SYSTEM}-2"]},
    ).json()
    assert {h["id"] for h in both["results"]} == {"k2", "k4"}
    assert search(http, query="windowsill zzzz", mode="keyword", limit=5)["results"][0]["id"] == (
        "k2"
    )
    assert search(http, query="nothing matches qqqq", mode="keyword")["results"] == []


def test_vector_and_hybrid_scores(http):
    vector = search(http, query="a broken kitchen appliance", mode="vector")["results"]
    assert vector[0]["id"] == "k3"
    assert all(h["score"] == h["similarity"] for h in vector)
    hybrid = search(http, query="refund for the blender", mode="hybrid")["results"]
    assert hybrid[0]["id"] == "k3"  # first in both rankings
    assert hybrid[0]["similarity"] is not None
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)
    default = search(http, query="refund for the blender")["results"]  # text: hybrid
    assert [(h["id"], h["score"]) for h in default] == [(h["id"], h["score"]) for h in hybrid]
    by_vector = search(http, vector=[0.1] * 384)["results"]  # a vector alone: cosine
    assert all(h["similarity"] is not None and h["score"] == h["similarity"] for h in by_vector)


def test_a_deleted_memory_leaves_the_keyword_index(http):
    memory = {"id": "gone", "system_id": SYSTEM, "conversation_id": "c2", "content": "plover"}
    assert http.post("/v1/memories", json={"memories": [memory]}).status_code == 201
    assert [h["id"] for h in search(http, query="plover", mode="keyword")["results"]] == ["gone"]
    assert http.delete("/v1/memories/gone", params={"system_id": SYSTEM}).status_code == 204
    assert search(http, query="plover", mode="keyword")["results"] == []


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_text_modes_without_text_are_a_422_naming_mode(http, mode):
    body = {"vector": [0.1] * 384, "mode": mode}
    response = http.post("/v1/search", json=body)
    assert response.status_code == 422, response.text
    assert ["body", "mode"] in [error["loc"] for error in response.json()["detail"]]


def test_an_unknown_mode_is_a_422_naming_mode(http):
    response = http.post("/v1/search", json={"query": "x", "mode": "fuzzy"})
    assert response.status_code == 422
    assert ["body", "mode"] in [error["loc"] for error in response.json()["detail"]]
