"""Ray GCS fault tolerance with an external Redis (Debian's redis-server): an `akasha up` head of
its own keeps the GCS's tables in Redis (`gcs_redis_address`). The GCS server is killed (-9)
while searches run over HTTP, and restarted with its own command line and environment (on
KubeRay the head pod's restart does this; locally nothing else would).

What GCS fault tolerance covers (Ray's docs, "GCS Fault Tolerance"): running actors and tasks
live on while the GCS is down; only creating actors, scheduling new workers and registering nodes
wait for it. So the Serve proxy and replicas go on answering, the detached actors (hot shards,
keys, warm, ...) keep their processes and what they hold in memory, and once the GCS is back a
new driver attaches and writes work again. Measured: the outage each kill makes for clients, and
the time from the restart until the GCS answers and a new driver has attached, over KILLS kills.
No time is asserted; the figures are printed (run with -s)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from akasha_ray import local_cluster
from akasha_ray.bench.replicas import ReplicaSampler, dashboard_status
from tests.e2e import own_head
from tests.servers.redis import redis_server

pytestmark = pytest.mark.e2e

KILLS = 2
DOWN_S = 5.0  # how long the GCS stays dead each time (Ray's raylet waits 60 s for it)

# A driver of its own (this test process is no Ray driver): every named actor's pid.
PIDS_SCRIPT = """
import json, os
import ray
from akasha_ray import config, local_cluster
settings = config.load()
local_cluster.connect(settings, start=False)
pids = {}
for actor in ray.util.list_named_actors(all_namespaces=True):
    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
    key = f"{actor['namespace']}/{actor['name']}"
    pids[key] = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=60)
print(json.dumps(pids))
"""


def _named_actor_pids(state: dict[str, Any]) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PIDS_SCRIPT],
        env=state["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gcs_process(head_id: str) -> dict[str, Any]:
    """The head's GCS server: pid, command line, environment and folder, read before the kill
    so that the same process can be started again."""
    for pid in local_cluster.head_pids(head_id):
        proc = Path(f"/proc/{pid}")
        try:
            argv = proc.joinpath("cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        if argv and Path(argv[0].decode()).name == "gcs_server":
            environ = proc.joinpath("environ").read_bytes().split(b"\0")
            env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
            return {
                "pid": pid,
                "argv": [a.decode() for a in argv],
                "env": env,
                "cwd": os.readlink(proc / "cwd"),
            }
    raise AssertionError(f"no gcs_server among the processes of head {head_id}")


class Prober:
    """Searches every PERIOD_S on a thread of its own; records (time, ok)."""

    PERIOD_S = 0.2

    def __init__(self, url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.results: list[tuple[float, bool, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"query": "the lighthouse keeper", "system_ids": ["ft"], "limit": 5}
        while not self._stop.is_set():
            at = time.monotonic()
            try:
                answer = self.client.post("/v1/search", json=body)
                ok = answer.status_code == 200 and bool(answer.json()["results"])
                self.results.append((at, ok, str(answer.status_code)))
            except httpx.HTTPError as exc:
                self.results.append((at, False, type(exc).__name__))
            self._stop.wait(self.PERIOD_S)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def between(self, start: float, end: float) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if start <= r[0] < end]

    def outage_s(self, since: float) -> float:
        """From `since` to the first success after the last failure (0 when none failed)."""
        after = [r for r in self.results if r[0] >= since]
        failed = [r[0] for r in after if not r[1]]
        if not failed:
            return 0.0
        recovered = [r[0] for r in after if r[1] and r[0] > failed[-1]]
        assert recovered, f"searches never answered again: {after[-5:]}"
        return recovered[0] - since


def _ingest(http: httpx.Client, contents: list[str]) -> list[str]:
    answer = _post_memories(http, contents)
    assert answer.status_code == 201, answer.text
    return answer.json()["ids"]


def _post_memories(http: httpx.Client, contents: list[str]) -> httpx.Response:
    memories = [{"system_id": "ft", "conversation_id": "c", "content": c} for c in contents]
    return http.post("/v1/memories", json={"memories": memories})


def test_serve_and_the_actors_outlive_a_gcs_crash():
    with (
        redis_server() as redis,
        own_head.own_akasha(
            "gcsft",
            AKASHA_GCS_REDIS_ADDRESS=redis.address,
            AKASHA_GCS_REDIS_PASSWORD=redis.password,
        ) as state,
    ):
        head_id = own_head.marker(state["data_dir"])["head_id"]
        http = httpx.Client(
            base_url=state["url"],
            headers={"Authorization": f"Bearer {state['admin_key']}"},
            timeout=120,
        )
        before = _ingest(http, [f"the lighthouse keeper's log, night {i}" for i in range(30)])
        # The GCS writes its tables under this head's namespace in Redis.
        assert int(redis.command("DBSIZE").lstrip(":")) > 0
        started = time.monotonic()
        pids = _named_actor_pids(state)
        attach_idle_s = time.monotonic() - started  # a driver's start, GCS up: the baseline
        assert any("hot" in name for name in pids), pids
        head = own_head.marker(state["data_dir"])
        token = (state["ray_tmp"] / "auth_token").read_text().strip()
        figures = []
        with (
            ReplicaSampler(dashboard_status(head["dashboard_url"], token)) as replicas,
            Prober(state["url"], state["admin_key"]) as prober,
        ):
            time.sleep(2)
            for kill in range(KILLS):
                gcs = _gcs_process(head_id)
                killed_at = time.monotonic()
                os.kill(gcs["pid"], signal.SIGKILL)
                time.sleep(DOWN_S)
                # A write goes through actors that run on; recorded, not asserted: with the
                # GCS down, a lookup of an actor by name (or a new worker) has to wait.
                during = _post_memories(http, [f"written while the GCS was down, kill {kill}"])
                restarted_at = time.monotonic()
                while_down = prober.between(killed_at, restarted_at)
                subprocess.Popen(
                    gcs["argv"],
                    env=gcs["env"],
                    cwd=gcs["cwd"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                while not local_cluster.gcs_answers(head["address"], timeout_s=1):
                    assert time.monotonic() - restarted_at < 120, "the GCS did not come back"
                    time.sleep(0.1)
                gcs_back_s = time.monotonic() - restarted_at
                after_pids = _named_actor_pids(state)  # a new driver attaches again
                attached_s = time.monotonic() - restarted_at
                assert after_pids == pids, "an actor was restarted (its state would be lost)"
                figures.append(
                    {
                        "searches_while_down": len(while_down),
                        "failed_while_down": sum(not r[1] for r in while_down),
                        "search_outage_s": round(prober.outage_s(killed_at), 2),
                        "gcs_answers_after_restart_s": round(gcs_back_s, 2),
                        "driver_attached_after_restart_s": round(attached_s, 2),
                        "ingest_while_down": during.status_code,
                    }
                )
            time.sleep(2)
        after = _ingest(http, ["the lighthouse keeper, after the crashes"])
        for memory_id in [*before, *after]:
            found = http.get(f"/v1/memories/{memory_id}", params={"system_id": "ft"})
            assert found.status_code == 200, found.text
        searched = http.post(
            "/v1/search", json={"query": "lighthouse keeper log", "system_ids": ["ft"]}
        )
        assert searched.status_code == 200 and searched.json()["results"]
        failures = [r for r in prober.results if not r[1]]
        serving = replicas.report()
        summary = {
            "kills": figures,
            "driver_attach_with_gcs_up_s": round(attach_idle_s, 2),
            "replicas": serving["deployments"],
            "failed_replica_reads": len(serving["failed_reads"]),
            "searches": len(prober.results),
            "failed_searches": len(failures),
            "failed_statuses": sorted({r[2] for r in failures}),
            "median_gcs_answers_after_restart_s": statistics.median(
                f["gcs_answers_after_restart_s"] for f in figures
            ),
            "median_driver_attached_after_restart_s": statistics.median(
                f["driver_attached_after_restart_s"] for f in figures
            ),
            "median_search_outage_s": statistics.median(f["search_outage_s"] for f in figures),
        }
        print("GCS fault tolerance:", json.dumps(summary, indent=1))
        # Serve ran on while the GCS was down: searches were served then, none failed with a
        # 5xx other than a 503 (none at all, expected), and no replica was replaced.
        assert all(f["searches_while_down"] > 0 for f in figures), summary
        assert all(r[2] in {"200", "503"} for r in prober.results), summary
        assert serving["deployments"]["api"]["min"] == serving["deployments"]["api"]["max"] == 1
        assert serving["deployments"]["embedder"]["max"] == 1, summary
