"""Tiers over HTTP: a memory lands in the tier its age calls for, a search asks every tier its
range overlaps, cold only when asked, and get/delete reach every tier."""

from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.client import AkashaHTTPError

pytestmark = pytest.mark.e2e


def _memory(content, age_days):
    at = datetime.now(UTC) - timedelta(days=age_days)
    return {
        "system_id": "tier-bot",
        "conversation_id": "t",
        "content": content,
        "created_at": at.isoformat(),
    }


@pytest.fixture(scope="module")
def placed(admin):
    texts = {
        "hot": ("the blue heron stood in the shallow river at dawn", 1),
        "warm": ("a grey heron waded through the river reeds last month", 30),
        "cold": ("herons nested by the river two summers ago", 400),
    }
    ids = admin.ingest([_memory(t, age) for t, age in texts.values()], progress=False)
    return dict(zip(texts, ids, strict=True))


def test_each_memory_lands_in_its_tier(admin, placed):
    for tier, memory_id in placed.items():
        assert admin.get(memory_id, "tier-bot")["tier"] == tier
    counts = {t["tier"]: t["count"] for t in admin.tiers()}
    assert counts["warm"] >= 1 and counts["cold"] >= 1


def test_search_asks_the_tiers_its_range_overlaps(admin, placed):
    now = datetime.now(UTC)
    spanning = admin.search(
        "heron by the river", system_ids=["tier-bot"], start=now - timedelta(days=60), limit=10
    )
    assert [t["tier"] for t in spanning["tiers"]] == ["hot", "warm"]
    assert {h["id"] for h in spanning["results"]} == {placed["hot"], placed["warm"]}
    assert not spanning["partial"]
    recent = admin.search(
        "heron by the river", system_ids=["tier-bot"], start=now - timedelta(days=2)
    )
    assert [t["tier"] for t in recent["tiers"]] == ["hot"]
    everything = admin.search("heron by the river", system_ids=["tier-bot"], include_cold=True)
    assert [t["tier"] for t in everything["tiers"]] == ["hot", "warm", "cold"]
    assert {h["id"]: h["tier"] for h in everything["results"]} == {
        placed[t]: t for t in ("hot", "warm", "cold")
    }
    scores = [h["score"] for h in everything["results"]]
    assert scores == sorted(scores, reverse=True)


def test_delete_reaches_every_tier(admin):
    ids = admin.ingest(
        [_memory("an old note to forget", 50), _memory("an ancient one", 300)], progress=False
    )
    for memory_id in ids:
        admin.delete(memory_id, "tier-bot")
        with pytest.raises(AkashaHTTPError) as caught:
            admin.get(memory_id, "tier-bot")
        assert caught.value.status_code == 404


def test_migrate_endpoint_is_admin_only_and_idempotent(akasha, admin):
    moved = admin.migrate()
    assert set(moved) >= {"hot-0->warm", "hot-1->warm", "warm->cold"}
    again = admin.migrate()
    assert all(hop["moved"] == 0 for hop in again.values())
    status = admin.migration()  # the migrator's: window in force, schedule, last pass
    assert status["hot_window"]["days"] == 7 and status["every_s"] == 3600
    assert status["last_pass"]["moved"] == again
    reader = admin.create_key(["tier-bot"], ["read"])
    from akasha_ray.client import AkashaClient

    with AkashaClient(akasha["url"], reader) as scoped, pytest.raises(AkashaHTTPError) as caught:
        scoped.migrate()
    assert caught.value.status_code == 403
