"""The `migrator` actor: the one place migrations run (so two never race on a ledger), every
`tiers.migrate_every_s` and on demand, and the keeper of the hot window (akasha_ray.hot_window).

Each pass first adapts the hot window to the hot shards' search latency, waits for readers to
have seen a changed window, then moves what has aged out: hot -> warm -> cold.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from akasha_ray import config, observability
from akasha_ray.hot_window import (
    READ_TTL_S,
    ShardLoad,
    WindowFile,
    all_fast,
    budget,
    grown,
    reconciled,
    resized,
    shrunk,
)
from akasha_ray.memories.peers import ActorTier, Peers
from akasha_ray.memories.tombstones import Tombstones
from akasha_ray.migration import Ledger, migrate
from akasha_ray.models import now_utc
from akasha_ray.routing import hot_actor_name

log = logging.getLogger(__name__)


class MigratorActor:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = config.from_dict(settings)
        tiers = self._settings.tiers
        # A reader may plan with an old window for READ_TTL_S, and its search may run for up to
        # the request timeout after that.
        self._settle_s = READ_TTL_S + self._settings.serve.request_timeout_s
        self._file = WindowFile(self._settings.data_dir)
        self._window = reconciled(
            self._file.read(tiers.hot_days), tiers.hot_days, now_utc(), self._settle_s
        )
        self._file.write(self._window)
        self._passing = asyncio.Lock()
        self._last: dict[str, Any] | None = None
        self._schedule = None
        if tiers.migrate_every_s > 0:
            loop = asyncio.get_event_loop()
            self._schedule = loop.create_task(self._every(tiers.migrate_every_s))

    async def window(self) -> dict[str, Any]:
        return self._window.to_json()

    async def status(self) -> dict[str, Any]:
        every = self._settings.tiers.migrate_every_s
        return {
            "hot_window": self._window.to_json(),
            "every_s": every or None,
            "last_pass": self._last,
        }

    async def migrate(self, batch_size: int = 5000) -> dict[str, Any]:
        """One pass now (after any pass already running); returns the window and counts."""
        async with self._passing:
            started = now_utc()
            try:
                await self._adapt()
                await self._settle()
                moved = await move_aged(self._settings, batch_size, self._window.days)
            except Exception as exc:
                self._last = {"started_at": started.isoformat(), "error": repr(exc)}
                observability.count_migration(None, ok=False)
                raise
            observability.count_migration(moved, ok=True)
            self._last = {"started_at": started.isoformat(), "finished_at": now_utc().isoformat()}
            self._last["moved"] = moved
            return {"hot_window": self._window.to_json(), "moved": moved}

    async def recover(self) -> dict[str, Any]:
        """Finish the batches a pass left open when it died (`akasha up` asks, so that after a
        crash every memory is in one tier again), and move nothing else."""
        async with self._passing:
            return await move_aged(self._settings, 5000, self._window.days, max_batches=0)

    async def _every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.migrate()
            except Exception:  # keep the schedule; status() reports the error
                log.exception("scheduled migration failed")

    async def _adapt(self) -> None:
        tiers = self._settings.tiers
        target = tiers.hot_target_p95_ms
        if target is None:
            return
        shards = Peers(self._settings).shards
        loads = [ShardLoad(**x) for x in await asyncio.gather(*(s.load.remote() for s in shards))]
        over = [
            (shard, rows)
            for shard, load in zip(shards, loads, strict=True)
            if (rows := budget(load, target)) is not None
        ]
        now = now_utc()
        if over:
            beyond = await asyncio.gather(*(s.newest_beyond.remote(rows) for s, rows in over))
            days = shrunk(self._window, beyond, now, tiers.hot_min_days)
            reason = f"hot search p95 over its {target:g} ms target"
        elif all_fast(loads, target):
            days = grown(self._window)
            reason = f"hot search p95 under half its {target:g} ms target"
        else:
            days = None
        if days is None:
            return
        self._window = resized(self._window, days, now, self._settle_s, reason)
        self._file.write(self._window)
        # Judge the new window by searches made under it.
        await asyncio.gather(*(s.reset_load.remote() for s in shards))
        log.info("hot window now %.3f days: %s", days, reason)

    async def _settle(self) -> None:
        """Wait until every reader plans with the window in force before moving by it."""
        changed = self._window.changed_at
        if changed is None:
            return
        left = self._settle_s - (now_utc() - changed).total_seconds()
        if left > 0:
            await asyncio.sleep(left)


async def move_aged(
    settings: config.Settings, batch_size: int, hot_days: float, max_batches: int | None = None
) -> dict[str, Any]:
    """Every hop, with the hot window `hot_days` (each hop first finishes the batches its ledger
    holds open; `max_batches=0` does only that); returns counts per hop."""
    # A search reading both tiers of a moving batch sees it in one at least (akasha_ray.migration).
    linger_s = settings.serve.request_timeout_s
    now = now_utc()
    peers = Peers(settings)
    graveyard = Tombstones(peers)
    warm, cold = ActorTier(peers.warm), ActorTier(peers.cold)
    ledgers = settings.data_dir / "migration"
    report: dict[str, Any] = {}
    hot_cutoff = now - timedelta(days=hot_days)
    options = {
        "batch_size": batch_size,
        "linger_s": linger_s,
        "graveyard": graveyard,
        "max_batches": max_batches,
    }
    for index, shard in enumerate(peers.shards):
        name = hot_actor_name(index)
        ledger = Ledger(ledgers / f"{name}-to-warm.jsonl")
        report[f"{name}->warm"] = await migrate(
            ActorTier(shard), warm, hot_cutoff, ledger, **options
        )
    warm_cutoff = now - timedelta(days=settings.tiers.warm_days)
    ledger = Ledger(ledgers / "warm-to-cold.jsonl")
    report["warm->cold"] = await migrate(warm, cold, warm_cutoff, ledger, **options)
    return report
