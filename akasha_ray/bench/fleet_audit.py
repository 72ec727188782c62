"""The audit at the end of `bench fleet`: every write the load recorded as acknowledged is asked
for over HTTP with its owner's scoped key.

- memories: `GET /v1/memories/{id}?system_id=` answers 200 (404: lost);
- metric points: a raw query of the system's series over the points' span holds each acknowledged
  timestamp (raw answers count the points per timestamp);
- relationships: the source's depth-1 neighbourhood (type RELATES_TO) holds the target.

A call that fails (5xx, no answer) is retried; one that keeps failing counts as `unreadable`, not
as lost. Writes whose outcome the load never learnt (no answer) are looked up too and counted as
found or absent: either is allowed. A metric point acknowledged is on disk (the timeseries actor's
journal), so one lost to a `kill -9` of that actor is lost like any other."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

METRIC = "fleet.latency_ms"
ATTEMPTS = 5


class Unreadable(Exception):
    """The call kept failing: neither found nor lost."""


def _get(http: httpx.Client, path: str, key: str, params: dict[str, Any]) -> httpx.Response:
    for attempt in range(ATTEMPTS):
        try:
            answer = http.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code < 500:
            return answer
        time.sleep(0.5 * (attempt + 1))
    raise Unreadable(path)


def _ms(moment: float | str) -> int:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment).timestamp()
    return round(moment * 1000)


class Audit:
    def __init__(self, url: str, keys: dict[str, str], workers: int = 16) -> None:
        self.url = url
        self.keys = keys
        self.workers = workers

    def _map(self, work: Callable[[httpx.Client, Any], Any], items: Iterable[Any]) -> list[Any]:
        with (
            httpx.Client(base_url=self.url, timeout=60) as http,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            return list(pool.map(lambda item: work(http, item), items))

    # -- memories -------------------------------------------------------------------------------

    def _memory(self, http: httpx.Client, key: tuple[str, str]) -> str:
        system, memory_id = key
        try:
            answer = _get(
                http, f"/v1/memories/{memory_id}", self.keys[system], {"system_id": system}
            )
        except Unreadable:
            return "unreadable"
        if answer.status_code == 200:
            return "found"
        return "lost" if answer.status_code == 404 else f"status {answer.status_code}"

    def memories(self, acked: list[dict], unknown: list[dict]) -> dict[str, Any]:
        keys = [(r["system"], i) for r in acked for i in r["ids"]]
        outcomes = self._map(self._memory, keys)
        counts = Counter(outcomes)
        unknown_keys = [(r["system"], i) for r in unknown for i in r["ids"]]
        maybe = Counter(self._map(self._memory, unknown_keys))
        return {
            "acknowledged": len(keys),
            "found": counts["found"],
            "lost": counts["lost"],
            "unreadable": counts["unreadable"],
            "other": {k: v for k, v in counts.items() if k.startswith("status")},
            "lost_examples": [
                f"{s}/{i}" for (s, i), o in zip(keys, outcomes, strict=True) if o == "lost"
            ][:10],
            "unknown_outcome": {"sent": len(unknown_keys), "stored": maybe["found"]},
        }

    # -- metric points --------------------------------------------------------------------------

    def _points(self, http: httpx.Client, item: tuple[str, list[float]]) -> Counter[int] | None:
        system, stamps = item
        start = datetime.fromtimestamp(min(stamps), UTC) - timedelta(milliseconds=1)
        end = datetime.fromtimestamp(max(stamps), UTC) + timedelta(milliseconds=2)
        params = {
            "system_id": system,
            "metric_name": METRIC,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "bucket": "raw",
        }
        try:
            answer = _get(http, "/v1/metrics/query", self.keys[system], params)
        except Unreadable:
            return None
        if answer.status_code != 200:
            return None
        return Counter({_ms(b["bucket"]): b["count"] for b in answer.json()["buckets"]})

    def points(self, acked: list[dict], unknown: list[dict]) -> dict[str, Any]:
        by_system: dict[str, list[float]] = defaultdict(list)
        for record in acked:
            by_system[record["system"]] += record["timestamps"]
        maybe: dict[str, Counter[int]] = defaultdict(Counter)
        for record in unknown:
            maybe[record["system"]].update(_ms(t) for t in record["timestamps"])
        stored = self._map(self._points, list(by_system.items()))
        lost, unreadable, extra = 0, 0, 0
        for (system, points), found in zip(by_system.items(), stored, strict=True):
            if found is None:
                unreadable += len(points)
                continue
            wanted = Counter(_ms(t) for t in points)
            lost += sum(max(0, n - found.get(stamp, 0)) for stamp, n in wanted.items())
            extra += sum(
                max(0, n - wanted.get(s, 0) - maybe[system].get(s, 0)) for s, n in found.items()
            )
        return {
            "acknowledged": sum(len(p) for p in by_system.values()),
            "systems": len(by_system),
            "lost": lost,
            "unreadable": unreadable,
            "stored_more_than_sent": extra,
        }

    # -- relationships --------------------------------------------------------------------------

    def _edges(self, http: httpx.Client, item: tuple[tuple[str, str], set[str]]) -> int | None:
        (system, source), targets = item
        params = {"system_id": system, "depth": 1, "types": "RELATES_TO", "limit": 10_000}
        try:
            answer = _get(http, f"/v1/graph/entities/{source}/neighbors", self.keys[system], params)
        except Unreadable:
            return None
        if answer.status_code != 200:
            return len(targets)
        found = {n["entity"]["id"] for n in answer.json()["neighbors"]}
        return len(targets - found)

    def edges(self, acked: list[dict]) -> dict[str, Any]:
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for record in acked:
            for source, target in record["pairs"]:
                wanted[(record["system"], source)].add(target)
        missing = self._map(self._edges, list(wanted.items()))
        return {
            "acknowledged": sum(len(t) for t in wanted.values()),
            "lost": sum(m for m in missing if m is not None),
            "unreadable": sum(
                len(t) for t, m in zip(wanted.values(), missing, strict=True) if m is None
            ),
        }

    def run(self, acks: list[dict], unknown: list[dict]) -> dict:
        kinds: dict[str, list[dict]] = defaultdict(list)
        for record in acks:
            kinds[record["kind"]].append(record)
        maybe: dict[str, list[dict]] = defaultdict(list)
        for record in unknown:
            maybe[record["kind"]].append(record)
        started = time.perf_counter()
        report = {
            "memories": self.memories(kinds["memories"], maybe["memories"]),
            "metric_points": self.points(kinds["points"], maybe["points"]),
            "relationships": self.edges(kinds["edges"]),
        }
        report["lost_writes"] = sum(part["lost"] for part in report.values())
        report["audit_s"] = round(time.perf_counter() - started, 1)
        return report
