"""Regions and their coordinators without Ray: the role and duty rules, and the coordinator's
loop against a real change log (the changelog actor's class on a temp DuckDB file), real Delta
logs in local-folder buckets and a real witness."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from actors.changelog import ChangelogActor
from akasha_ray import config
from akasha_ray.config import DrConfig
from akasha_ray.errors import Conflict, NotPrimary
from akasha_ray.replication import changes, promotion, status
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.coordinator import AsyncPort, Coordinator, backoff_s
from akasha_ray.replication.delta_log import DeltaLog
from akasha_ray.replication.regions import RegionsView, configured, promotable
from akasha_ray.replication.witness import Witness


def dr_config(here: str, root: Path | str = "/tmp/none") -> DrConfig:
    return DrConfig(
        region=here,
        regions=[
            {"name": "east", "role": "primary", "bucket": f"{root}/east", "url": "http://e"},
            {"name": "west", "role": "secondary", "bucket": f"{root}/west", "url": "http://w"},
            {"name": "vault", "role": "backup", "bucket": f"{root}/vault"},
        ],
        ship_every_s=0.05,
        witness_check_s=0.05,
        sync_timeout_s=0.5,
    )


# -- the view --------------------------------------------------------------------------------


def test_roles_follow_the_witness_not_the_configuration():
    view = RegionsView(dr_config("east"), 1, "east")
    assert view.roles() == {"east": "primary", "west": "secondary", "vault": "backup"}
    promoted = RegionsView(dr_config("east"), 2, "west")
    assert promoted.roles() == {"east": "secondary", "west": "primary", "vault": "backup"}


def test_the_primary_ships_to_every_other_region_and_a_secondary_applies_from_the_primary():
    primary = RegionsView(dr_config("east"), 1, "east")
    assert [r.name for r in primary.ship_targets()] == ["west", "vault"]
    assert primary.duty("west") == "ship" and primary.duty("vault") == "ship"
    secondary = RegionsView(dr_config("west"), 1, "east")
    assert secondary.duty("east") == "apply"
    assert secondary.duty("vault") == "idle"
    assert secondary.ship_targets() == []
    # After west's promotion, west ships to east and the vault; east applies west's log.
    assert RegionsView(dr_config("west"), 2, "west").duty("east") == "ship"
    assert RegionsView(dr_config("east"), 2, "west").duty("west") == "apply"


def test_a_deposed_primary_applies_nothing_until_rejoined():
    view = RegionsView(dr_config("east"), 2, "west", fenced=True)
    assert view.duty("west") == "idle"
    assert not view.is_primary


def test_a_backup_applies_nothing():
    assert RegionsView(dr_config("vault"), 1, "east").duty("east") == "idle"


def test_the_witness_must_name_a_configured_region():
    with pytest.raises(ValueError, match="north"):
        RegionsView(dr_config("east"), 1, "north")


def test_promotion_targets_are_checked():
    view = configured(dr_config("east"))
    assert (view.epoch, view.primary) == (0, "east")
    promotable(view, "west")
    for target, why in (("north", "no region"), ("vault", "backup"), ("east", "already")):
        with pytest.raises(ValueError, match=why):
            promotable(view, target)


def test_backoff_doubles_and_is_capped():
    assert [backoff_s(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    assert backoff_s(50) == 10.0


# -- the coordinator on real stores ---------------------------------------------------------


class Region:
    """One region's change log (the actor's own class) and settings, in a temp folder."""

    def __init__(self, root: Path, here: str) -> None:
        self.dr = dr_config(here, root)
        settings = config.load(data_dir=root / f"data-{here}", dr=self.dr.model_dump())
        self.settings = settings
        self.actor = ChangelogActor(config.to_dict(settings))
        self.log = AsyncPort(self.actor)

    def coordinator(self, other: str, applier=None, max_changes: int = 64) -> Coordinator:
        here = self.dr.region
        buckets = {r.name: Bucket.for_region(r) for r in self.dr.regions}
        return Coordinator(
            self.dr,
            other,
            self.log,
            outbound=DeltaLog(buckets[other], here),
            inbound=DeltaLog(buckets[here], other),
            witness=Witness(buckets[self.dr.witness_region().name]),
            elsewhere={
                name: DeltaLog(bucket, other)
                for name, bucket in buckets.items()
                if name not in (here, other)
            },
            applier=applier,
            state_dir=self.settings.data_dir / "dr",
            max_changes=max_changes,
        )


def entries(n: int, stream: str = "hot-0") -> list[tuple[str, str, str | None, bytes]]:
    return [
        (stream, "delete", "sys", changes.json_payload({"key": f"sys/m{i}", "at": "2026"}))
        for i in range(n)
    ]


class Collects:
    """An applier that keeps what it was given (the real one needs Ray: integration tests)."""

    def __init__(self) -> None:
        self.rows: list[pa.Table] = []

    async def apply(self, rows: pa.Table) -> dict[str, int]:
        self.rows.append(rows)
        out: dict[str, int] = {}
        for stream, lsn in zip(rows["stream"].to_pylist(), rows["lsn"].to_pylist(), strict=True):
            out[stream] = max(out.get(stream, 0), lsn)
        return out


def test_the_primary_ships_its_log_and_the_secondary_applies_it(tmp_path):
    async def scenario():
        east, west = Region(tmp_path, "east"), Region(tmp_path, "west")
        await east.log.append(entries(5) + entries(2, "metrics"))
        ship = east.coordinator("west", max_changes=4)
        assert await ship.step() == 4  # the witness is created at epoch 1, then one shipment
        assert ship.view.epoch == 1 and ship.progress.duty == "ship"
        assert await ship.step() == 3
        assert (await east.log.shipped())["west"] == {"hot-0": 5, "metrics": 2}
        status = await ship.status()
        assert status["lag_changes"] == 0 and status["last_error"] is None
        await east.log.append(entries(1))
        assert (await ship.status())["lag_changes"] == 1

        collected = Collects()
        apply = west.coordinator("east", applier=lambda: collected, max_changes=4)
        moved = [await apply.step() for _ in range(3)]
        assert moved == [4, 3, 0]
        assert await west.log.applied("east") == {"hot-0": 5, "metrics": 2}
        got = pa.concat_tables(collected.rows)
        assert sorted(zip(got["stream"].to_pylist(), got["lsn"].to_pylist(), strict=True)) == [
            *[("hot-0", i) for i in range(1, 6)],
            ("metrics", 1),
            ("metrics", 2),
        ]
        assert (await apply.status())["lag_changes"] == 0
        await ship.step()  # the 6th change reaches west's bucket
        assert (await apply.status())["lag_changes"] == 1

    asyncio.run(scenario())


def test_a_failed_shipment_is_kept_for_status_and_retried(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        await east.log.append(entries(3))
        ship = east.coordinator("west")
        await ship.follow_witness()
        west_bucket = tmp_path / "west"
        west_bucket.parent.mkdir(exist_ok=True)
        west_bucket.write_text("not a folder")  # the bucket is unusable
        assert await ship.step() == 0
        first = ship.progress.error
        assert first is not None and first.attempts == 1
        assert await ship.step() == 0
        status = await ship.status()
        assert status["last_error"]["attempts"] == 2
        assert status["last_error"]["since"] == first.since.isoformat()
        assert status["lag_changes"] == 3 and status["lag_s"] > 0
        west_bucket.unlink()  # the bucket is back
        assert await ship.step() == 3
        assert ship.progress.error is None
        assert DeltaLog(Bucket(str(west_bucket)), "east").versions() == {"hot-0": 3}

    asyncio.run(scenario())


def test_a_resent_shipment_commits_nothing_twice(tmp_path):
    """The commit landed but the mark did not (a crash in between): the next coordinator
    starts from the table's versions and ships only what is new."""

    async def scenario():
        east = Region(tmp_path, "east")
        await east.log.append(entries(3))
        table = DeltaLog(Bucket(str(tmp_path / "west")), "east")
        table.ship(await east.log.read({}, 10), 1)  # shipped, never marked
        await east.log.append(entries(2))
        ship = east.coordinator("west")
        assert await ship.step() == 2
        assert table.read({}).num_rows == 5
        assert (await east.log.shipped())["west"] == {"hot-0": 5}

    asyncio.run(scenario())


def test_a_primary_that_reads_a_newer_epoch_refuses_writes_and_stops_shipping(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        ship = east.coordinator("west")
        await east.log.append(entries(1))
        assert await ship.step() == 1
        witness = Witness(Bucket(str(tmp_path / "vault")))
        witness.advance(witness.read(), "west")  # west was promoted elsewhere
        await east.log.append(entries(1))
        await asyncio.sleep(east.dr.witness_check_s)  # the witness is due again
        assert await ship.step() == 0  # it read the witness first: no more shipping
        assert ship.progress.duty == "idle"
        assert (await east.log.state())["primary"] == "west"
        with pytest.raises(NotPrimary):
            await east.log.append(entries(1))
        assert ship.deposed()["primary"] == "west"
        assert (await ship.status())["deposed"]["epoch"] == 2
        # A restarted coordinator still knows: the deposed primary applies nothing.
        again = east.coordinator("west", applier=Collects)
        await again.follow_witness()
        assert again.view.duty("west") == "idle"

    asyncio.run(scenario())


def test_an_unreadable_witness_is_reported_and_shipping_goes_on(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        ship = east.coordinator("west")
        await ship.follow_witness()
        vault = tmp_path / "vault" / "akasha-dr" / "witness.json"
        vault.write_text("{not json")
        await east.log.append(entries(2))
        await asyncio.sleep(east.dr.witness_check_s)
        assert await ship.step() == 2
        status = await ship.status()
        assert "witness" in status["witness_error"]["message"]
        assert status["last_error"] is None

    asyncio.run(scenario())


# -- promotion ------------------------------------------------------------------------------


class Direct:
    """The old primary's side of a promotion, called in-process (over HTTP in production)."""

    def __init__(self, region: Region, root: Path) -> None:
        self.region = region
        self.witness = Witness(Bucket(str(root / "vault")))

    async def handover(self, to: str, timeout_s: float) -> dict:
        return await promotion.handover(
            self.region.settings, self.region.log, self.witness, to, timeout_s
        )

    async def resume(self) -> dict:
        return await promotion.resume(self.region.settings, self.region.log, self.witness)

    async def status(self) -> dict:
        return {"logged": await self.region.log.last()}


async def running(*coordinators: Coordinator) -> list[asyncio.Task]:
    return [asyncio.create_task(c.run()) for c in coordinators]


async def stop(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_planned_switchover_loses_nothing_and_fences_the_old_primary(tmp_path):
    async def scenario():
        east, west = Region(tmp_path, "east"), Region(tmp_path, "west")
        await east.log.append(entries(7) + entries(3, "metrics"))
        east_to_west = east.coordinator("west")
        collected = Collects()
        west_from_east = west.coordinator("east", applier=lambda: collected)
        tasks = await running(east_to_west, west_from_east)
        try:
            report = await promotion.promote(
                west.settings,
                west.log,
                Witness(Bucket(str(tmp_path / "vault"))),
                west_from_east.catch_up,
                mode="planned",
                old=Direct(east, tmp_path),
                followers=[west_from_east.follow_witness],
            )
        finally:
            await stop(tasks)
        assert report["promoted"] == "west" and report["epoch"] == 2
        assert report["lost"]["changes"] == 0
        assert report["applied"] == {"hot-0": 7, "metrics": 3}
        assert await west.log.applied("east") == {"hot-0": 7, "metrics": 3}
        # west takes writes; east refuses them, naming west.
        assert (await west.log.state())["primary"] == "west"
        await west.log.append(entries(1))
        with pytest.raises(NotPrimary) as refused:
            await east.log.append(entries(1))
        assert refused.value.primary == "west"
        # west's coordinator for east now ships; east learns the epoch, is not deposed (it
        # handed over), and applies west's log.
        assert west_from_east.view.duty("east") == "ship"
        assert await west_from_east.step() == 1
        await east_to_west.follow_witness()
        assert east_to_west.deposed() is None
        assert east_to_west.view.duty("west") == "apply"

    asyncio.run(scenario())


def test_a_switchover_with_too_much_unshipped_is_refused_and_writes_resume(tmp_path):
    async def scenario():
        east, west = Region(tmp_path, "east"), Region(tmp_path, "west")
        await east.log.append(entries(4))
        west_from_east = west.coordinator("east", applier=Collects)
        with pytest.raises(Conflict, match="4 changes are still not shipped"):
            await promotion.promote(  # nothing ships: east's coordinator is not running
                west.settings,
                west.log,
                Witness(Bucket(str(tmp_path / "vault"))),
                west_from_east.catch_up,
                mode="planned",
                old=Direct(east, tmp_path),
            )
        await east.log.append(entries(1))  # east takes writes again
        assert Witness(Bucket(str(tmp_path / "vault"))).read().epoch == 1

    asyncio.run(scenario())


def test_a_forced_failover_promotes_what_the_bucket_holds_and_reports_the_gap(tmp_path):
    async def scenario():
        east, west = Region(tmp_path, "east"), Region(tmp_path, "west")
        await east.log.append(entries(5))
        east_to_west = east.coordinator("west")
        assert await east_to_west.step() == 5
        await east.log.append(entries(2))  # logged, never shipped: east then dies
        west_from_east = west.coordinator("east", applier=Collects)
        tasks = await running(west_from_east)
        try:
            report = await promotion.promote(
                west.settings,
                west.log,
                Witness(Bucket(str(tmp_path / "vault"))),
                west_from_east.catch_up,
                mode="forced",
                old=Direct(east, tmp_path),  # its status still answers here
            )
        finally:
            await stop(tasks)
        assert report["applied"] == {"hot-0": 5} and report["epoch"] == 2
        assert report["lost"] == {"changes": 2, "streams": {"hot-0": 2}, "from": "east"}
        # East comes back: it reads the witness, refuses writes and is deposed (no apply).
        await asyncio.sleep(east.dr.witness_check_s)
        assert await east_to_west.step() == 0
        assert east_to_west.deposed()["primary"] == "west"
        assert east_to_west.view.duty("west") == "idle"
        with pytest.raises(NotPrimary):
            await east.log.append(entries(1))
        # A second forced promotion from the old view loses: the witness moved.
        witness = Witness(Bucket(str(tmp_path / "vault")))
        with pytest.raises(Conflict, match="already is the primary"):
            await promotion.promote(
                west.settings, west.log, witness, west_from_east.catch_up, mode="forced", old=None
            )

    asyncio.run(scenario())


def test_a_forced_failover_takes_what_only_the_backups_bucket_holds(tmp_path):
    """sync mode answers once ANY other bucket holds a write: here the backup's got the last
    two changes and the secondary's did not (its endpoint was down); promoted, the secondary
    copies them from the backup's bucket and applies them: nothing acknowledged is lost."""

    async def scenario():
        east, west = Region(tmp_path, "east"), Region(tmp_path, "west")
        await east.log.append(entries(5))
        assert await east.coordinator("west").step() == 5
        await east.log.append(entries(2))
        to_vault = east.coordinator("vault")
        await to_vault.step()  # the witness read first, then the shipment
        assert (await east.log.shipped())["vault"] == {"hot-0": 7}
        west_from_east = west.coordinator("east", applier=Collects)
        tasks = await running(west_from_east)
        try:
            report = await promotion.promote(
                west.settings,
                west.log,
                Witness(Bucket(str(tmp_path / "vault"))),
                west_from_east.catch_up,
                mode="forced",
                old=None,  # east is gone
            )
        finally:
            await stop(tasks)
        assert report["applied"] == {"hot-0": 7} and report["epoch"] == 2
        assert DeltaLog(Bucket(str(tmp_path / "west")), "east").versions() == {"hot-0": 7}

    asyncio.run(scenario())


def test_two_forced_promotions_from_one_witness_state_one_wins(tmp_path):
    """Two regions read epoch 1 and both try to advance it: exactly one does."""
    from akasha_ray.replication.witness import Fenced

    witness = Witness(Bucket(str(tmp_path / "vault")))
    seen = witness.init("east")
    won = witness.advance(seen, "west")
    with pytest.raises(Fenced, match="another promotion won"):
        witness.advance(seen, "south")
    assert witness.read().epoch == won.epoch == 2


def test_status_gathers_every_region_and_names_a_silent_coordinator(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        ship = east.coordinator("west")
        await east.log.append(entries(2))
        await ship.step()

        async def silent():
            raise TimeoutError("region-vault did not answer")

        report = await status.gather(
            east.settings, east.log, {"west": ship.status(), "vault": silent()}
        )
        assert report["role"] == "primary" and report["writable"]
        assert report["logged"] == {"hot-0": 2}
        west, vault = report["regions"]
        assert west["name"] == "west" and west["shipped"] == {"hot-0": 2}
        assert west["lag_changes"] == 0
        assert "region-vault" in vault["last_error"]["message"]
        assert report["status"] == "failing"
        component = status.health(report)
        assert component["status"] == "failing" and "vault" in component["error"]

    asyncio.run(scenario())


def test_the_primary_snapshots_into_the_backup_region_when_due(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        east.dr.snapshot_every_s = 3600
        taken: list[dict] = []
        stored: list[dict] = []

        async def latest():
            return stored[-1] if stored else None

        async def take():
            manifest = {"id": f"s{len(taken)}", "finished_at": datetime.now(UTC).isoformat()}
            taken.append(manifest)
            stored.append(manifest)
            return manifest

        to_vault, to_west = east.coordinator("vault"), east.coordinator("west")
        for coordinator in (to_vault, to_west):
            await coordinator.step()
        assert await to_west.snapshot_if_due(latest, take) is None  # not the backup region
        assert (await to_vault.snapshot_if_due(latest, take))["id"] == "s0"
        assert (await to_vault.snapshot_if_due(latest, take))["id"] == "s0"  # not due yet
        assert len(taken) == 1
        stored[-1] = {"id": "old", "finished_at": (datetime.now(UTC) - timedelta(hours=2))}
        fresh = east.coordinator("vault")
        await fresh.step()
        assert (await fresh.snapshot_if_due(latest, take))["id"] == "s1"  # the newest was old
        assert (await fresh.status())["last_snapshot"]["id"] == "s1"

        async def broken():
            raise OSError("bucket gone")

        again = east.coordinator("vault")
        await again.step()
        assert await again.snapshot_if_due(broken, take) is None
        assert "bucket gone" in (await again.status())["snapshot_error"]["message"]

    asyncio.run(scenario())


def test_a_deposed_region_rejoins_through_a_restore_then_applies(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        await east.log.append(entries(1))
        coordinator = east.coordinator("west", applier=Collects)
        await coordinator.follow_witness()
        witness = Witness(Bucket(str(tmp_path / "vault")))
        witness.advance(witness.read(), "west")
        await asyncio.sleep(east.dr.witness_check_s)
        await coordinator.step()
        assert coordinator.deposed() is not None
        with pytest.raises(Conflict, match="not the primary"):
            await east.coordinator("vault").rejoin(Collects)
        restored = []

        async def restore():
            restored.append(True)
            return {"versions": {}}

        assert await coordinator.rejoin(restore) == {"versions": {}}
        assert restored and coordinator.deposed() is None
        assert coordinator.view.duty("west") == "apply"

    asyncio.run(scenario())


def test_a_primary_that_starts_without_its_witness_ships_under_the_epoch_it_knows(tmp_path):
    async def scenario():
        east = Region(tmp_path, "east")
        vault = tmp_path / "vault"
        vault.parent.mkdir(exist_ok=True)
        vault.write_text("not a folder")  # the witness's bucket is unusable from the start
        await east.log.append(entries(2))
        ship = east.coordinator("west")
        assert await ship.step() == 2
        assert ship.view.epoch == 1 and ship.view.primary == "east"
        assert (await ship.status())["witness_error"] is not None

    asyncio.run(scenario())
