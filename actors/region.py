"""The `region-<other>` actor: the thin owner of this region's coordinator for another region
(`akasha_ray/replication/coordinator.py`), which ships the change log there or applies the
primary's log here, and follows the witness.

Its loop starts with the actor, as the migrator's schedule does, so a restarted actor (Ray
restarts it after a crash) goes on by itself from the marks the change log keeps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from akasha_ray import observability
from akasha_ray.config import Settings, from_dict
from akasha_ray.errors import Conflict
from akasha_ray.memories.peers import find
from akasha_ray.memories.service import call
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.coordinator import Coordinator
from akasha_ray.replication.delta_log import DeltaLog
from akasha_ray.replication.witness import Witness

log = logging.getLogger(__name__)

CHANGELOG = "changelog"
SNAPSHOT_CHECK_S = 10.0  # how often the snapshot schedule is looked at


def actor_name(region: str) -> str:
    return f"region-{region}"


class ActorPort:
    """A named actor's methods as coroutines (the coordinator's `ChangeLogPort`), found by
    name on first use so the actor may start before the change log does."""

    def __init__(self, name: str, namespace: str, timeout_s: float = 120.0) -> None:
        self._name, self._namespace, self._timeout = name, namespace, timeout_s
        self._handle: Any = None

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def invoke(*args: Any, **kwargs: Any) -> Any:
            if self._handle is None:
                self._handle = find(self._name, self._namespace)
            ref = getattr(self._handle, method).remote(*args, **kwargs)
            return await call(ref, self._name, self._timeout)

        return invoke


class RegionActor:
    def __init__(self, settings: dict[str, Any], other: str) -> None:
        self._settings: Settings = from_dict(settings)
        observability.json_logs()
        dr = self._settings.dr
        here = dr.this()
        there = next(r for r in dr.regions if r.name == other)
        self._log = ActorPort(CHANGELOG, self._settings.namespace)
        self.coordinator = Coordinator(
            dr,
            other,
            self._log,
            outbound=DeltaLog(Bucket.for_region(there), here.name),
            inbound=DeltaLog(Bucket.for_region(here), other),
            witness=Witness(Bucket.for_region(dr.witness_region())),
            elsewhere={
                r.name: DeltaLog(Bucket.for_region(r), other)
                for r in dr.regions
                if r.name not in (here.name, other)
            },
            applier=self._applier,
            state_dir=self._settings.data_dir / "dr",
        )
        self._other = other
        loop = asyncio.get_event_loop()
        self._task = loop.create_task(self._run())
        self._snapshots = loop.create_task(self._snapshot_loop())

    def _applier(self) -> Any:
        from akasha_ray.replication.apply import Applier

        return Applier(self._settings, self._other)

    async def _run(self) -> None:
        while True:
            await self.coordinator.run_for(self._settings.dr.witness_check_s)
            try:
                status = await self.coordinator.status()
            except Exception as exc:  # noqa: BLE001 - the gauges wait; status() says why
                log.warning("region %s: status for the gauges failed: %s", self._other, exc)
                continue
            observability.set_replication_lag(
                self._other, status["duty"], status["lag_s"], status["lag_changes"]
            )

    async def _snapshot_loop(self) -> None:
        """Beside shipping (a snapshot may take minutes): snapshots into the backup region's
        bucket when due (the coordinator decides; only the primary's coordinator for the
        backup region takes them)."""
        from akasha_ray.replication import snapshot

        here = self._settings.dr.region
        bucket = Bucket.for_region(self._settings.dr.witness_region())

        async def latest() -> dict[str, Any] | None:
            return await asyncio.to_thread(snapshot.latest, bucket, here)

        async def take() -> dict[str, Any]:
            return await snapshot.take(self._settings, bucket, here)

        while True:
            await asyncio.sleep(SNAPSHOT_CHECK_S)
            await self.coordinator.snapshot_if_due(latest, take)

    async def rejoin(self) -> dict[str, Any]:
        """On a region started on an empty data dir after it was deposed: restore the primary's
        (`other`'s) latest snapshot in the backup region's bucket and its log after it, then
        apply on from there."""
        from akasha_ray.replication.restore import restore

        if await self._log.last():
            raise Conflict(
                f"region {self._settings.dr.region} still holds writes of its own (its change "
                "log is not empty): `akasha down`, move the data dir away, `akasha up` on an "
                "empty one, then rejoin",
            )
        backups = [r for r in self._settings.dr.regions if r.role == "backup"]
        if not backups:
            raise Conflict("rejoin restores from the backup region's bucket: none is configured")
        bucket = Bucket.for_region(backups[0])

        async def restored() -> dict[str, Any]:
            return await restore(self._settings, bucket, self._other, into_nonempty=True)

        return await self.coordinator.rejoin(restored)

    async def status(self) -> dict[str, Any]:
        return await self.coordinator.status()

    async def follow_witness(self) -> dict[str, Any]:
        """Read the witness now (after a promotion) and return the status."""
        await self.coordinator.follow_witness()
        return await self.coordinator.status()

    async def caught_up(self, versions: Mapping[str, int] | None, timeout_s: float) -> dict:
        """A promotion's catch-up: wait until the other region's log is applied here, through
        `versions` (planned) or through what this region's bucket holds (forced)."""
        return await self.coordinator.catch_up(versions, timeout_s)
