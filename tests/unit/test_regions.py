"""Regions and their coordinators without Ray: the role and duty rules, and the coordinator's
loop against a real change log (the changelog actor's class on a temp DuckDB file), real Delta
logs in local-folder buckets and a real witness."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from actors.changelog import ChangelogActor
from akasha_ray import config
from akasha_ray.config import DrConfig
from akasha_ray.replication import changes
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
        from akasha_ray.errors import NotPrimary

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
