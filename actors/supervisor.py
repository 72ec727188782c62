"""Get-or-create Akasha's named actors in one place, so every caller finds the same ones."""

from __future__ import annotations

import json
from pathlib import Path

import ray
from ray.actor import ActorHandle

from actors.changelog import ACTOR_NAME as CHANGELOG
from actors.changelog import ChangelogActor
from actors.graph import GraphActor
from actors.hot_shard import HotShardActor
from actors.keys import KeysActor
from actors.migrator import MigratorActor
from actors.tier_owner import ColdActor, WarmActor
from actors.timeseries import ACTOR_NAME as TIMESERIES
from actors.timeseries import TimeseriesActor
from akasha_ray.config import Settings, to_dict
from akasha_ray.errors import ConfigError
from akasha_ray.routing import hot_actor_name

MANIFEST = "manifest.json"
# 2: memories keyed by (system_id, id) with a content hash, tombstones in the hot shards.
DATA_FORMAT = 2

# Actors outlive the process that created them (detached) and come back after a crash
# (max_restarts=-1); calls in flight during a restart are retried, which is safe because every
# shard call is idempotent or read-only.
_OWNER_OPTIONS = {
    "lifetime": "detached",
    "get_if_exists": True,
    "max_restarts": -1,
    "max_task_retries": 3,
}


def shard_path(data_dir: Path, index: int) -> Path:
    return data_dir / "hot" / f"shard-{index:03d}.duckdb"


def check_manifest(settings: Settings) -> None:
    """Refuse a shard count that differs from the one the data dir was created with, and a data
    dir in an older layout.

    Routing is `hash(system_id) % shards`: another count would send systems to the wrong shard.
    """
    path = settings.data_dir / MANIFEST
    if path.exists():
        recorded = json.loads(path.read_text())
        found = recorded.get("format", 1)
        if found != DATA_FORMAT:
            raise ConfigError(
                f"{settings.data_dir} holds data in format {found}, from before "
                f"memories were keyed by (system_id, id) (format {DATA_FORMAT}); point "
                "AKASHA_DATA_DIR at a new folder and ingest again (no in-place upgrade yet)"
            )
        if recorded["hot_shards"] != settings.hot.shards:
            raise ConfigError(
                f"{settings.data_dir} was created with hot.shards={recorded['hot_shards']}; "
                f"set AKASHA_HOT__SHARDS={recorded['hot_shards']} (resharding is not supported yet)"
            )
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"hot_shards": settings.hot.shards, "format": DATA_FORMAT}))


def hot_shards(settings: Settings) -> list[ActorHandle]:
    check_manifest(settings)
    remote = ray.remote(HotShardActor)
    return [
        remote.options(
            name=hot_actor_name(i), namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS
        ).remote(str(shard_path(settings.data_dir, i)), settings.hot.shards)
        for i in range(settings.hot.shards)
    ]


def keys(settings: Settings) -> ActorHandle:
    return (
        ray.remote(KeysActor)
        .options(name="keys", namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS)
        .remote(str(settings.data_dir))
    )


def timeseries(settings: Settings) -> ActorHandle:
    # No task retries here: a retried write after a restart could store its points twice.
    options = {**_OWNER_OPTIONS, "max_task_retries": 0}
    return (
        ray.remote(TimeseriesActor)
        .options(name=TIMESERIES, namespace=settings.namespace, num_cpus=0, **options)
        .remote(to_dict(settings), settings.timeseries.options.model_dump(mode="json"))
    )


def graph(settings: Settings) -> ActorHandle:
    # Upserts and reads are idempotent, so calls in flight may be retried after a restart.
    return (
        ray.remote(GraphActor)
        .options(name="graph", namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS)
        .remote(to_dict(settings)["graph"], str(settings.data_dir))
    )


def warm(settings: Settings) -> ActorHandle:
    return (
        ray.remote(WarmActor)
        .options(name="warm", namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS)
        .remote(to_dict(settings))
    )


def cold(settings: Settings) -> ActorHandle:
    return (
        ray.remote(ColdActor)
        .options(name="cold", namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS)
        .remote(to_dict(settings))
    )


def migrator(settings: Settings) -> ActorHandle:
    # A pass retried after a restart is safe: the ledgers finish what the first try began.
    return (
        ray.remote(MigratorActor)
        .options(name="migrator", namespace=settings.namespace, num_cpus=0, **_OWNER_OPTIONS)
        .remote(to_dict(settings))
    )


def changelog(settings: Settings) -> ActorHandle:
    # No task retries: a retried append after a restart would log the change twice.
    options = {**_OWNER_OPTIONS, "max_task_retries": 0}
    return (
        ray.remote(ChangelogActor)
        .options(name=CHANGELOG, namespace=settings.namespace, num_cpus=0, **options)
        .remote(to_dict(settings))
    )


def regions(settings: Settings, env: dict[str, str] | None = None) -> dict[str, ActorHandle]:
    """One `region-<name>` coordinator per other region (DR on): ships there or applies its log.
    `env`: variables for their processes (tests: bucket credentials a running cluster lacks)."""
    from actors.region import RegionActor, actor_name

    extra = {"runtime_env": {"env_vars": env}} if env else {}
    return {
        other.name: ray.remote(RegionActor)
        .options(
            name=actor_name(other.name),
            namespace=settings.namespace,
            num_cpus=0,
            **_OWNER_OPTIONS,
            **extra,
        )
        .remote(to_dict(settings), other.name)
        for other in settings.dr.others()
    }


# Every actor of one Akasha, in the order `akasha up` creates them and `akasha down` walks them.
OWNERS = {
    "keys": keys,
    TIMESERIES: timeseries,
    "graph": graph,
    "warm": warm,
    "cold": cold,
    "migrator": migrator,
}


def start_all(settings: Settings) -> None:
    """Get or create every actor (hot shards first): the ingress and jobs then find them by
    name (akasha_ray.memories.peers)."""
    hot_shards(settings)
    for create in OWNERS.values():
        create(settings)
    if settings.dr.enabled:
        changelog(settings)
        regions(settings)


def adopt_running(settings: Settings) -> Settings:
    """The settings with the data dir of the Akasha running in this namespace, if there is one."""
    try:
        running = ray.get_actor("keys", namespace=settings.namespace)
    except ValueError:
        return settings
    data_dir = Path(ray.get(running.data_dir.remote()))
    return settings.model_copy(update={"data_dir": data_dir})


def actor_names(settings: Settings) -> list[str]:
    replication = [CHANGELOG] if settings.dr.enabled else []
    replication += [f"region-{r.name}" for r in settings.dr.others()] if settings.dr.enabled else []
    return [hot_actor_name(i) for i in range(settings.hot.shards)] + list(OWNERS) + replication
