"""/v1/tiers and /v1/stats for a scoped key cover its own systems only (no bytes, no migration
counts), from counters kept on write: they follow an ingest and a delete; the admin sees every
system, with bytes. (Migration and brute-force counts: tests/integration/test_tier_summaries.py.)"""

from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.client import AkashaClient

pytestmark = pytest.mark.e2e

MINE, OTHER = "scoped-tiers-mine", "scoped-tiers-other"


def _memories(system_id, ages_days, tag):
    now = datetime.now(UTC)
    return [
        {
            "system_id": system_id,
            "conversation_id": "c",
            "content": f"{tag} note {n}",
            "created_at": (now - timedelta(days=age, minutes=n)).isoformat(),
        }
        for n, age in enumerate(ages_days)
    ]


def _counts(tiers):
    return {t["tier"]: t["count"] for t in tiers}


@pytest.fixture(scope="module")
def scoped(akasha, admin):
    key = admin.create_key([MINE], ["read", "write"])
    with AkashaClient(akasha["url"], key) as client:
        yield client


def test_scoped_tiers_and_stats_cover_own_systems(admin, scoped):
    mine = admin.ingest(_memories(MINE, [1, 2, 3, 30, 40, 400], "mine"), progress=False)
    admin.ingest(_memories(OTHER, [1, 1, 1, 1, 30, 30, 500, 500], "other"), progress=False)

    tiers = scoped.tiers()
    assert _counts(tiers) == {"hot": 3, "warm": 2, "cold": 1}
    assert all("bytes" not in t for t in tiers)
    hot = next(t for t in tiers if t["tier"] == "hot")
    assert hot["oldest"] < hot["newest"]
    migration = scoped.migration()
    assert set(migration) == {"hot_window", "every_s"}  # a pass's counts are every system's

    stats = scoped.stats()
    assert [s["system_id"] for s in stats["systems"]] == [MINE]
    assert {t: stats["systems"][0][t]["count"] for t in ("hot", "warm", "cold")} == {
        "hot": 3,
        "warm": 2,
        "cold": 1,
    }

    everyone = admin.tiers()
    assert all(t["count"] >= _counts(tiers)[t["tier"]] for t in everyone)
    assert all("bytes" in t for t in everyone)
    assert "hot" in admin.stats()

    scoped.delete(mine[0])  # the newest hot one
    after = scoped.tiers()
    assert _counts(after) == {"hot": 2, "warm": 2, "cold": 1}
    assert next(t for t in after if t["tier"] == "hot")["newest"] < hot["newest"]
