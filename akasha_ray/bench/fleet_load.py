"""The load half of `bench fleet`: locust, headless, as a library, in a process of its own.

Run as `python -m akasha_ray.bench.fleet_load --url U --keys FILE --out DIR --duration S --users N`.
It lives apart from `fleet.py` because importing locust monkey-patches the standard library with
gevent, which a Ray driver or the fault injector must not run under.

Each user picks a random system of the fleet for each task and calls with that system's scoped
key. Every acknowledged write is recorded (`acks.jsonl`): memories (system, id), metric points
(system, metric, timestamps) and relationships (system, source, type, target); a write whose
outcome is unknown (no answer: timeout or dropped connection) goes to `unknown.jsonl`, since it
may or may not be stored. Every request is one line of `requests.csv` (start time, route, status,
ms, partial), from which the faults' error windows are read.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402 - after the patch, as locust requires
import csv  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust import FastHttpUser, between, events, task  # noqa: E402
from locust.env import Environment  # noqa: E402

_VOCABULARY = (
    "order delivery refund invoice password account battery screen laptop phone router "
    "printer meeting calendar flight hotel booking doctor appointment recipe garden weather "
    "coffee train ticket birthday gift music concert movie book library school homework "
    "project deadline budget salary bank loan insurance car repair bike marathon yoga"
)
WORDS = _VOCABULARY.split()
OPENERS = (
    "The user asked about",
    "We talked about",
    "Reminder set for",
    "Complaint regarding",
    "Follow-up on",
    "The assistant explained",
)
# Ages a memory is written with, and how often: most are fresh, some are backfills into warm and
# cold, and some are hot memories about to age out, so the migrator has work during the run.
AGES = (("hot", 0.78), ("aging", 0.07), ("warm", 0.10), ("cold", 0.05))
METRIC = "fleet.latency_ms"
STATUS_NO_ANSWER = 0  # locust's status for a timeout or a dropped connection


class Fleet:
    """What every user shares: the keys, the records, the request log."""

    systems: list[str] = []
    keys: dict[str, str] = {}
    hot_days: float = 7.0
    acks: list[dict[str, Any]] = []
    unknown: list[dict[str, Any]] = []
    rows: list[tuple[float, str, int, float, int]] = []
    partial: Counter[str] = Counter()
    memories: list[tuple[str, str]] = []  # acknowledged (system, id), for reads
    edges: dict[str, list[tuple[str, str]]] = defaultdict(list)  # system -> (source, target)
    metric_systems: list[str] = []
    said: dict[str, list[str]] = defaultdict(list)  # "route status" -> the first few answers


def sentence(rng: random.Random) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24)))
    return f"{rng.choice(OPENERS)} {words}."


def created_at(rng: random.Random, now: datetime) -> datetime:
    kind = rng.choices([a for a, _ in AGES], [w for _, w in AGES])[0]
    if kind == "hot":
        age = timedelta(hours=rng.uniform(0, 48))
    elif kind == "aging":  # ages out of the hot window within the next 10 minutes
        age = timedelta(days=Fleet.hot_days) - timedelta(seconds=rng.uniform(5, 600))
    elif kind == "warm":
        age = timedelta(days=rng.uniform(10, 80))
    else:
        age = timedelta(days=rng.uniform(120, 400))
    return now - age


def iso(moment: datetime) -> str:
    return moment.isoformat()


class FleetUser(FastHttpUser):
    wait_time = between(0.5, 2.5)
    network_timeout = 240.0  # above Akasha's own deadlines (180 s): its 503 answers first
    connection_timeout = 30.0

    def on_start(self) -> None:
        self.rng = random.Random()
        # A first round of every task once, writes first (the order they are defined in), then
        # the weighted mix: a short run still reaches the rare routes (ingest[100] is 1 in 78).
        for each in dict.fromkeys(self.tasks):
            self._taskset_instance.schedule_task(each)

    def _system(self) -> tuple[str, dict[str, str]]:
        system = self.rng.choice(Fleet.systems)
        return system, {"Authorization": f"Bearer {Fleet.keys[system]}"}

    def _call(self, method: str, path: str, route: str, headers: dict[str, str], **kw: Any):
        """One request; returns (status, parsed JSON or None). 2xx is a success in locust's
        statistics, anything else a failure."""
        with self.client.request(
            method, path, name=route, headers=headers, catch_response=True, **kw
        ) as response:
            status = response.status_code or STATUS_NO_ANSWER
            body = None
            if 200 <= status < 300:
                response.success()
                if response.content:
                    body = response.json()
            else:
                response.failure(f"HTTP {status}")
                said = Fleet.said[f"{route} {status}"]
                if len(said) < 3:
                    said.append((response.text or str(response.error))[:300])
            return status, body

    # -- writes ---------------------------------------------------------------------------------

    def _ingest(self, size: int) -> None:
        system, headers = self._system()
        now = datetime.now(UTC)
        memories = []
        for _ in range(size):
            memory: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "system_id": system,
                "conversation_id": f"c{self.rng.randint(0, 20)}",
                "content": sentence(self.rng),
                "created_at": iso(created_at(self.rng, now)),
            }
            if self.rng.random() < 0.2:
                memory["entities"] = [f"topic:{self.rng.choice(WORDS)}"]
            memories.append(memory)
        status, body = self._call(
            "POST", "/v1/memories", f"ingest[{size}]", headers, json={"memories": memories}
        )
        record = {
            "kind": "memories",
            "system": system,
            "ids": [m["id"] for m in memories],
            "at": time.time(),
        }
        if 200 <= status < 300:
            assert body is not None and body["ids"] == record["ids"], body
            Fleet.acks.append(record)
            Fleet.memories.extend((system, m["id"]) for m in memories)
        elif status == STATUS_NO_ANSWER:
            Fleet.unknown.append(record)

    @task(10)
    def ingest_small(self) -> None:
        self._ingest(10)

    @task(1)
    def ingest_batch(self) -> None:
        self._ingest(100)

    @task(10)
    def write_metrics(self) -> None:
        system, headers = self._system()
        now = time.time()
        # Distinct timestamps (ms apart) so the audit can count every point.
        stamps = sorted({round(now - self.rng.uniform(0, 1800), 3) for _ in range(20)})
        points = [
            {
                "timestamp": iso(datetime.fromtimestamp(t, UTC)),
                "system_id": system,
                "metric_name": METRIC,
                "value": self.rng.uniform(1, 500),
            }
            for t in stamps
        ]
        status, _ = self._call(
            "POST", "/v1/metrics", "metrics write", headers, json={"points": points}
        )
        record = {"kind": "points", "system": system, "timestamps": stamps, "at": time.time()}
        if 200 <= status < 300:
            Fleet.acks.append(record)
            Fleet.metric_systems.append(system)
        elif status == STATUS_NO_ANSWER:
            Fleet.unknown.append(record)

    @task(8)
    def write_graph(self) -> None:
        system, headers = self._system()
        names = self.rng.sample(WORDS, 3)
        entities = [{"id": f"topic:{n}", "type": "Topic", "system_id": system} for n in names]
        status, _ = self._call(
            "POST", "/v1/graph/entities", "graph entities", headers, json={"entities": entities}
        )
        if not 200 <= status < 300:
            return
        pairs = [(entities[0]["id"], entities[1]["id"]), (entities[1]["id"], entities[2]["id"])]
        relationships = [
            {"source": s, "target": t, "type": "RELATES_TO", "system_id": system} for s, t in pairs
        ]
        status, _ = self._call(
            "POST",
            "/v1/graph/relationships",
            "graph relationships",
            headers,
            json={"relationships": relationships},
        )
        record = {
            "kind": "edges",
            "system": system,
            "type": "RELATES_TO",
            "pairs": pairs,
            "at": time.time(),
        }
        if 200 <= status < 300:
            Fleet.acks.append(record)
            Fleet.edges[system].extend(pairs)
        elif status == STATUS_NO_ANSWER:
            Fleet.unknown.append(record)

    # -- reads ----------------------------------------------------------------------------------

    def _search(self, route: str, days: float | None, **extra: Any) -> None:
        _, headers = self._system()
        body: dict[str, Any] = {"query": sentence(self.rng), "limit": 10, **extra}
        if days is not None:
            body["start"] = iso(datetime.now(UTC) - timedelta(days=days))
        _, answer = self._call("POST", "/v1/search", route, headers, json=body)
        if answer is not None and answer.get("partial"):
            Fleet.partial[route] += 1
            self._mark_partial()

    def _mark_partial(self) -> None:
        # The request event fired as `_call` left its `with`; no I/O since, so no other
        # greenlet ran: the last row is this request's.
        last = Fleet.rows[-1]
        Fleet.rows[-1] = (*last[:4], 1)

    @task(15)
    def search_hot(self) -> None:
        self._search("search hot", 1)

    @task(8)
    def search_hot_warm(self) -> None:
        self._search("search hot+warm", 60)

    @task(5)
    def search_unbounded(self) -> None:
        self._search("search no range", None)

    @task(4)
    def search_keyword(self) -> None:
        self._search("search keyword", 60, mode="keyword")

    @task(2)
    def search_cold(self) -> None:
        self._search("search with cold", 400, include_cold=True)

    @task(5)
    def get_memory(self) -> None:
        if not Fleet.memories:
            return
        system, memory_id = self.rng.choice(Fleet.memories)
        headers = {"Authorization": f"Bearer {Fleet.keys[system]}"}
        self._call("GET", f"/v1/memories/{memory_id}", "get memory", headers)

    def _metrics_query(self, route: str, bucket: str, hours: float) -> None:
        if not Fleet.metric_systems:
            return
        system = self.rng.choice(Fleet.metric_systems)
        headers = {"Authorization": f"Bearer {Fleet.keys[system]}"}
        end = datetime.now(UTC)
        params = {
            "system_id": system,
            "metric_name": METRIC,
            "start": iso(end - timedelta(hours=hours)),
            "end": iso(end),
            "bucket": bucket,
        }
        self._call("GET", "/v1/metrics/query", route, headers, params=params)

    @task(4)
    def metrics_5m(self) -> None:
        self._metrics_query("metrics 5m", "5m", 1)

    @task(2)
    def metrics_1h(self) -> None:
        self._metrics_query("metrics 1h", "1h", 24)

    @task(4)
    def graph_path(self) -> None:
        if not Fleet.edges:
            return
        system = self.rng.choice(list(Fleet.edges))
        source, target = self.rng.choice(Fleet.edges[system])
        headers = {"Authorization": f"Bearer {Fleet.keys[system]}"}
        params = {"source": source, "target": target, "max_hops": 4, "system_id": system}
        self._call("GET", "/v1/graph/path", "graph path", headers, params=params)


def _on_request(
    name: str, response_time: float, response: Any, start_time: float, **_: Any
) -> None:
    status = getattr(response, "status_code", None) or STATUS_NO_ANSWER
    Fleet.rows.append((round(start_time, 3), name, status, round(response_time, 1), 0))


def run(args: argparse.Namespace) -> dict[str, Any]:
    keys = json.loads(Path(args.keys).read_text())
    Fleet.keys = keys
    Fleet.systems = sorted(keys)
    Fleet.hot_days = args.hot_days
    events.request.add_listener(_on_request)
    env = Environment(user_classes=[FleetUser], events=events, host=args.url)
    runner = env.create_local_runner()
    gevent.sleep(max(0.0, args.start_at - time.time()))  # the fault schedule counts from then
    started = time.time()
    runner.start(args.users, spawn_rate=args.users)
    gevent.spawn(_quit_after, runner, args)
    runner.greenlet.join()
    elapsed = time.time() - started
    return _write(Path(args.out), env, started, elapsed)


def _quit_after(runner: Any, args: argparse.Namespace) -> None:
    """Load for --duration seconds, then on until --until exists (the fault schedule is done),
    at most --until-bound-s more: a short run still sees every fault under load."""
    gevent.sleep(args.duration)
    deadline = time.time() + args.until_bound_s
    while args.until is not None and not Path(args.until).exists() and time.time() < deadline:
        gevent.sleep(0.5)
    runner.quit()


def _write(out: Path, env: Environment, started: float, elapsed: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "acks.jsonl").open("w") as lines:
        lines.writelines(json.dumps(a) + "\n" for a in Fleet.acks)
    with (out / "unknown.jsonl").open("w") as lines:
        lines.writelines(json.dumps(u) + "\n" for u in Fleet.unknown)
    with (out / "requests.csv").open("w", newline="") as table:
        writer = csv.writer(table)
        writer.writerow(["start", "route", "status", "ms", "partial"])
        writer.writerows(Fleet.rows)
    routes = {}
    for (name, _method), entry in sorted(env.stats.entries.items()):
        routes[name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "requests_per_s": round(entry.num_requests / elapsed, 2),
            **{
                f"p{q}_ms": round(entry.get_response_time_percentile(q / 100), 1)
                for q in (50, 95, 99)
            },
            "partial": Fleet.partial.get(name, 0),
        }
    statuses = Counter(str(row[2]) for row in Fleet.rows)
    total = env.stats.total
    report = {
        "started_at": started,
        "duration_s": round(elapsed, 1),
        "requests": total.num_requests,
        "requests_per_s": round(total.num_requests / elapsed, 2),
        "statuses": dict(sorted(statuses.items())),
        "routes": routes,
        "error_answers": dict(sorted(Fleet.said.items())),
    }
    (out / "load.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--keys", required=True, help="JSON {system_id: scoped key}")
    parser.add_argument("--out", required=True, help="folder for the records and the report")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--hot-days", type=float, default=7.0)
    parser.add_argument("--until", help="after --duration, go on until this file exists")
    parser.add_argument("--until-bound-s", type=float, default=900.0, help="at most this long")
    parser.add_argument("--start-at", type=float, default=0.0, help="epoch seconds to begin at")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
