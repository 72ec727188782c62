import pytest
import ray

from akasha_ray import demo
from akasha_ray.jobs.ingest import run
from akasha_ray.memories.peers import Peers

pytestmark = pytest.mark.integration


def test_job_embeds_in_parallel_and_a_rerun_adds_nothing(ray_cluster, settings, tmp_path):
    source = tmp_path / "memories.jsonl"
    records = demo.generate(300, seed=11)
    demo.write_jsonl(source, records)
    with open(source, "a") as out:
        out.write('{"system_id": "x"}\n')

    summary = run(source, settings, chunk_size=64)
    assert summary["seen"] == 301 and summary["stored"] == 300 and summary["rejected"] == 1
    assert summary["first_rejects"][0]["error"] == "conversation_id: Field required"

    peers = Peers(settings)
    owners = {f"hot-{i}": s for i, s in enumerate(peers.shards)}
    owners |= {"warm": peers.warm, "cold": peers.cold}
    assert {name.split("-")[0] for name in owners} == {"hot", "warm", "cold"}
    assert sum(ray.get(o.stats.remote())["count"] for o in owners.values()) == 300
    # Demo data spans 120 days: each memory went to the tier its age calls for.
    per_tier: dict[str, int] = {}
    for name, owner in owners.items():
        tier = name.split("-")[0]
        per_tier[tier] = per_tier.get(tier, 0) + ray.get(owner.stats.remote())["count"]
    assert all(per_tier.values()), per_tier

    # Every chunk is checkpointed: a second run skips them all and stores nothing.
    again = run(source, settings, chunk_size=64)
    assert again["chunks_resumed"] == 5 and again["stored"] == 0
    # Without the checkpoint (another chunking), the ids still make the writes no-ops.
    third = run(source, settings, chunk_size=100)
    assert third["chunks_resumed"] == 0 and third["stored"] == 0
    assert sum(ray.get(o.stats.remote())["count"] for o in owners.values()) == 300
