"""Move memories that have aged out of their tier: hot shards -> warm -> cold.

    ray job submit --working-dir . -- python -m akasha_ray.jobs.migrate
    akasha migrate          # the same, from the CLI

Both ask the `migrator` actor for a pass now (it also runs one every `tiers.migrate_every_s`), so
passes never overlap. Each hop copies, verifies and only then deletes, with a ledger per hop in
`<data_dir>/migration/` (see akasha_ray.migration), so a migration killed at any point and run
again loses nothing and leaves nothing in two tiers.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

import ray
from ray.actor import ActorHandle

from akasha_ray import config
from akasha_ray.migration import Ledger, migrate
from akasha_ray.models import now_utc


class ActorTier:
    """An actor handle seen as the async store the migrator moves memories between."""

    def __init__(self, handle: ActorHandle) -> None:
        self._handle = handle

    async def ids_before(self, cutoff, limit):
        return await self._handle.ids_before.remote(cutoff, limit)

    async def fetch(self, ids):
        return await self._handle.fetch.remote(ids)

    async def delete_many(self, ids):
        return await self._handle.delete_many.remote(ids)

    async def insert(self, batch):
        return await self._handle.insert.remote(batch)

    async def existing(self, ids):
        return await self._handle.existing.remote(ids)


async def run(settings: config.Settings, batch_size: int, hot_days: float) -> dict[str, Any]:
    """One pass over every hop with the hot window `hot_days`; needs a connected Ray. Returns
    counts per hop. Called by the migrator actor, the one place passes run."""
    from actors import supervisor

    now = now_utc()
    warm = ActorTier(supervisor.warm(settings))
    cold = ActorTier(supervisor.cold(settings))
    ledgers = settings.data_dir / "migration"
    report: dict[str, Any] = {}
    hot_cutoff = now - timedelta(days=hot_days)
    for index, shard in enumerate(supervisor.hot_shards(settings)):
        name = f"hot-{index}"
        ledger = Ledger(ledgers / f"{name}-to-warm.jsonl")
        report[f"{name}->warm"] = await migrate(
            ActorTier(shard), warm, hot_cutoff, ledger, batch_size=batch_size
        )
    warm_cutoff = now - timedelta(days=settings.tiers.warm_days)
    ledger = Ledger(ledgers / "warm-to-cold.jsonl")
    report["warm->cold"] = await migrate(warm, cold, warm_cutoff, ledger, batch_size=batch_size)
    return report


def main(argv: list[str] | None = None) -> int:
    from actors import supervisor

    parser = argparse.ArgumentParser(prog="akasha_ray.jobs.migrate", description=__doc__)
    parser.add_argument("--batch-size", type=int, default=5000, help="memories per ledger batch")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    settings = config.load()
    ray.init(address=settings.ray_address or "auto", namespace=settings.namespace)
    settings = supervisor.adopt_running(settings)
    print(json.dumps(ray.get(supervisor.migrator(settings).migrate.remote(args.batch_size))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
