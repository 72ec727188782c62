import uuid
from datetime import UTC, datetime, timedelta

from akasha_ray.ids import new_id, stable_id
from akasha_ray.routing import shard_for
from akasha_ray.search import merge_hits, plan_hot


def test_new_ids_are_uuid7_and_time_ordered():
    ids = [new_id() for _ in range(200)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert len(set(ids)) == 200
    stamps = [uuid.UUID(i).int >> 80 for i in ids]
    assert stamps == sorted(stamps)


def test_stable_ids_depend_on_content_and_sort_by_time():
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert stable_id(t, "a", "b") == stable_id(t, "a", "b")
    assert stable_id(t, "a", "b") != stable_id(t, "a", "c")
    assert stable_id(t, "ab", "") != stable_id(t, "a", "b")
    assert stable_id(t, "z") < stable_id(t + timedelta(seconds=1), "a")
    assert uuid.UUID(stable_id(t, "x")).version == 7


def test_shard_routing_is_stable_across_processes_and_spreads():
    # Fixed expectations: a change here would send existing systems to the wrong shard.
    assert [shard_for(s, 8) for s in ("support-bot", "code-assistant", "agent-42")] == [1, 5, 7]
    assert shard_for("support-bot", 1) == 0
    counts = [0] * 4
    for i in range(4000):
        counts[shard_for(f"system-{i}", 4)] += 1
    assert min(counts) > 800


def test_routing_constant_values():
    import hashlib

    digest = hashlib.blake2b(b"support-bot", digest_size=8).digest()
    assert shard_for("support-bot", 7) == int.from_bytes(digest, "big") % 7


def test_plan_hot_groups_systems_by_shard():
    plan = plan_hot(["a", "b", "c", "a"], 3)
    assert sorted(s for systems in plan.values() for s in systems) == ["a", "b", "c"]
    assert all(shard_for(s, 3) == shard for shard, systems in plan.items() for s in systems)
    assert plan_hot(None, 3) == {0: None, 1: None, 2: None}


def test_merge_orders_by_similarity_and_deduplicates():
    a = [{"id": "1", "system_id": "s", "similarity": 0.9}]
    a += [{"id": "2", "system_id": "s", "similarity": 0.5}]
    b = [{"id": "2", "system_id": "s", "similarity": 0.6}]
    b += [{"id": "3", "system_id": "s", "similarity": 0.7}]
    merged = merge_hits([a, b], 10)
    assert [(h["id"], h["similarity"]) for h in merged] == [("1", 0.9), ("3", 0.7), ("2", 0.6)]
    assert len(merge_hits([a, b], 2)) == 2
    # The same id in another system is another memory: both stay.
    other = [{"id": "2", "system_id": "t", "similarity": 0.55}]
    assert [(h["system_id"], h["id"]) for h in merge_hits([a, b, other], 10)][-2:] == [
        ("s", "2"),
        ("t", "2"),
    ]


def test_ask_tiers_keeps_the_answers_of_tiers_that_worked():
    import asyncio

    from akasha_ray.errors import Unavailable
    from akasha_ray.search import PartialTier, ask_tiers

    async def fast():
        return [{"id": "a", "similarity": 0.5}]

    async def slow():
        await asyncio.sleep(5)
        return []

    async def down():
        raise Unavailable("milvus is down")

    async def half():
        raise PartialTier("hot-1 did not answer", [{"id": "b", "similarity": 0.4}])

    answers = asyncio.run(
        ask_tiers({"hot": fast, "warm": slow, "cold": down, "other": half}, timeout_s=0.2)
    )
    assert answers["hot"].hits == [{"id": "a", "similarity": 0.5}] and answers["hot"].error is None
    assert answers["warm"].error == "no answer within 0.2 s" and answers["warm"].hits == []
    assert "milvus is down" in answers["cold"].error
    assert answers["other"].hits[0]["id"] == "b" and "hot-1" in answers["other"].error
