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

import ray

from akasha_ray import config


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
