import time
from datetime import UTC, datetime

import numpy as np
import pytest
import ray

from actors import supervisor
from akasha_ray.errors import ConfigError
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for

pytestmark = pytest.mark.integration


def _batch(n, system="sys-a"):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    memories = [
        MemoryIn(system_id=system, conversation_id="c", content=f"text {i}") for i in range(n)
    ]
    return build_batch(memories, x, model="m", model_revision="r", now=datetime.now(UTC)), x


def test_get_or_create_returns_the_same_named_actors(ray_cluster, settings):
    first = supervisor.hot_shards(settings)
    second = supervisor.hot_shards(settings)
    assert [a._actor_id for a in first] == [a._actor_id for a in second]
    names = {
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == settings.namespace
    }
    assert {"hot-0", "hot-1"} <= names


def test_shard_count_is_fixed_per_data_dir(ray_cluster, settings):
    supervisor.hot_shards(settings)
    other = settings.model_copy(update={"hot": settings.hot.model_copy(update={"shards": 3})})
    with pytest.raises(ConfigError, match=r"hot\.shards=2"):
        supervisor.hot_shards(other)


def test_killed_shard_comes_back_with_its_data(ray_cluster, settings):
    shards = supervisor.hot_shards(settings)
    shard = shards[shard_for("sys-a", len(shards))]
    batch, x = _batch(200)
    assert len(ray.get(shard.insert.remote(batch))) == 200
    before = [h["id"] for h in ray.get(shard.search.remote(x[5], 10))]
    pid_before = ray.get(shard.__ray_call__.remote(lambda self: __import__("os").getpid()))

    ray.kill(shard, no_restart=False)  # a crash: Ray restarts the actor, which reopens its file
    deadline = time.monotonic() + 60
    while True:
        try:
            stats = ray.get(shard.stats.remote(), timeout=30)
            break
        except ray.exceptions.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    pid_after = ray.get(shard.__ray_call__.remote(lambda self: __import__("os").getpid()))
    assert pid_after != pid_before
    assert stats["count"] == 200 == stats["indexed"]
    assert [h["id"] for h in ray.get(shard.search.remote(x[5], 10))] == before
    assert ray.get(shard.insert.remote(batch)) == []
