"""The DR drill at CI size (`akasha dr drill`, cluster/runbook.md): a primary and a secondary
Akasha, each on a Ray head of its own, and a backup region, each with a real SeaweedFS S3
endpoint; the secondary's endpoint stopped for a while under writes, then the primary killed
(`kill -9` of its processes and its endpoint) and the secondary promoted twice at once; at the
end the old primary comes back (its endpoint, `akasha up` on its data dir).

Sync mode, so that what is checked holds whatever this machine's speed: every write the primary
acknowledged is on the new primary (RPO 0), no region acknowledged a write while not primary
(the revived old primary refuses every write, naming the new one), the stalled secondary caught
up with nothing missing, one of the two promotions moved the epoch, and the new primary takes
writes. The times (RTO, catch-up) are reported, not asserted."""

from __future__ import annotations

import json

import pytest

from akasha_ray.replication import drill

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    options = drill.DrillOptions(
        seconds=25,
        mode="sync",
        stall_s=8,
        catch_up_s=180,
        after_s=5,
        revive=True,
    )
    result = drill.run(options, say=print)
    path = tmp_path_factory.mktemp("drill") / "drill.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(path.read_text())
    return result


def test_the_writer_was_acknowledged_by_both_primaries(report):
    by_region = report["writes"]["by_region"]
    assert by_region.get("east", 0) > 0
    assert by_region.get("west", 0) > 0, report["failover"]
    assert report["rto_s"] is not None


def test_nothing_acknowledged_is_lost_in_sync_mode(report):
    assert report["lost"]["count"] == 0, report["lost"]
    assert report["rpo_s"] == 0
    assert report["lost_on_new_primary"]["count"] == 0, report["lost_on_new_primary"]


def test_no_zombie_writes(report):
    assert report["zombies"]["count"] == 0, report["zombies"]


def test_a_stalled_secondary_catches_up_with_nothing_missing(report):
    stalled = report["stalled_secondary"]
    assert stalled["stopped_s"] >= 8
    assert stalled["acknowledged_before_resume"] > 0
    assert stalled["missing"]["count"] == 0, stalled["missing"]


def test_two_promotions_at_once_move_the_epoch_once(report):
    promotions = report["failover"]["promotions"]
    assert sorted(p.get("status") for p in promotions) == [200, 409], promotions
    assert report["concurrent_promotions"]["one_won"], report["concurrent_promotions"]
    assert report["concurrent_promotions"]["witness_after"]["primary"] == "west"


def test_the_new_primary_reports_itself_writable(report):
    status = report["status_after"]
    assert status["status"] == 200, status
    assert status["body"]["role"] == "primary" and status["body"]["writable"] is True


def test_the_old_primary_back_refuses_writes_naming_the_new_one(report):
    revived = report["revived_old_primary"]
    assert "error" not in revived, revived
    assert set(revived["answers"]) == {"503"}, revived
    assert revived["primary_named"] == ["west"]
    body = revived["status"]["body"]
    assert body["writable"] is False and body["primary"] == "west", body
