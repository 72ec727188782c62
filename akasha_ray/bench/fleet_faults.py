"""Faults for `bench fleet`, on a schedule: `kill -9` of an actor's process (a hot shard, warm,
timeseries, graph, migrator, an embedder replica) and SIGSTOP of a server's processes for a while
(Milvus, PostgreSQL, Bolt, S3), then SIGCONT.

After each fault, the injector waits for recovery without lending a hand: `/healthz` (admin key)
all `ok` and a probe that needs the component answering whole (a search not `partial`, a metrics
query, a graph read). Recovery time is from the fault (for a stop: from the SIGCONT too) to the
first moment both hold. The error window is read afterwards from the load's request log: from the
first failed request (no answer, 5xx, or a partial search) of the fault to the end of the last. A
failed request is the fault's when the fault was the last injected before the request ended (one
sent a moment before a fault and run into it is that fault's, not the previous one's)."""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from akasha_ray import local_cluster
from akasha_ray.bench.fleet_stack import Stack
from akasha_ray.embedding_dim import DIM

# Ray titles an actor's worker process `ray::<Class>` (`ray::<Class>.<method>` while it runs one).
ACTOR_TITLES = {
    "hot-shard": "ray::HotShardActor",
    "warm": "ray::WarmActor",
    "timeseries": "ray::TimeseriesActor",
    "graph": "ray::GraphActor",
    "migrator": "ray::MigratorActor",
    "embedder-replica": "ray::ServeReplica:akasha:embedder",
}
KILLS = tuple(ACTOR_TITLES)
STOPS = ("milvus", "postgres", "bolt", "s3")
RECOVER_TIMEOUT_S = 240.0
PROBE_TIMEOUT_S = 15.0


@dataclass
class Fault:
    name: str  # a key of ACTOR_TITLES or a server name
    at_s: float  # seconds after the load began

    @property
    def kind(self) -> str:
        return "kill -9" if self.name in ACTOR_TITLES else "SIGSTOP"


def schedule(names: list[str], duration_s: float, warmup_s: float, tail_s: float) -> list[Fault]:
    """Faults spread evenly between the warm-up and the tail of the run."""
    if not names:
        return []
    step = max(0.0, duration_s - warmup_s - tail_s) / len(names)
    return [Fault(name, warmup_s + i * step) for i, name in enumerate(names)]


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def actor_pids(head_id: str, title: str) -> list[int]:
    return [
        pid
        for pid in local_cluster.head_pids(head_id)
        if _title(pid) == title or _title(pid).startswith(title + ".")
    ]


class Injector:
    def __init__(self, stack: Stack, stop_s: float, log: Callable[[str], None]) -> None:
        self.stack = stack
        self.stop_s = stop_s
        self.log = log
        self.http = httpx.Client(
            base_url=stack.url,
            headers={"Authorization": f"Bearer {stack.admin_key}"},
            timeout=PROBE_TIMEOUT_S,
        )
        self.rng = random.Random(12)
        self.vector = [1.0] + [0.0] * (DIM - 1)

    def close(self) -> None:
        self.http.close()

    def run(self, faults: list[Fault], load_started: float, stop: threading.Event) -> list[dict]:
        """Inject each fault at its time (or once the previous one recovered, if later)."""
        results = []
        for fault in faults:
            wait = load_started + fault.at_s - time.time()
            if stop.wait(max(0.0, wait)):
                results.append({"fault": fault.name, "kind": fault.kind, "skipped": "run ended"})
                continue
            results.append(self.inject(fault))
        return results

    def inject(self, fault: Fault) -> dict[str, Any]:
        result: dict[str, Any] = {"fault": fault.name, "kind": fault.kind}
        migrating = None
        if fault.kind == "kill -9":
            pids = actor_pids(self.stack.head_id, ACTOR_TITLES[fault.name])
            if not pids:
                return {**result, "skipped": f"no process titled {ACTOR_TITLES[fault.name]}"}
            pid = self.rng.choice(pids)
            migrating = self._start_pass() if fault.name == "migrator" else None
            result["injected_at"] = time.time()
            os.kill(pid, signal.SIGKILL)
            result |= {"pid": pid}
            self.log(f"fault: kill -9 {fault.name} (pid {pid})")
        else:
            server = self.stack.servers.get(fault.name)
            if server is None:
                return {**result, "skipped": f"{fault.name}: its embedded default is in use"}
            pids = server.pids()
            result |= {"injected_at": time.time(), "pids": len(pids), "stopped_s": self.stop_s}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            self.log(f"fault: SIGSTOP {fault.name} ({len(pids)} processes) for {self.stop_s} s")
            time.sleep(self.stop_s)
            for pid in reversed(pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            result["resumed_at"] = time.time()
            # A server that exits when frozen (Milvus 2.3.5 does once a stop outlasts its etcd
            # session ttl, which tests/servers sets to 120 s) is not restarted here: the finding.
            gone = [pid for pid in pids if _gone(pid)]
            if gone:
                result["server_processes_exited"] = len(gone)
                self.log(f"fault: {len(gone)} {fault.name} processes exited during the stop")
                return {**result, "recovered": False, "recovered_at": None}
        recovered = self._await_recovery(fault.name, result["injected_at"])
        result["recovered_at"] = recovered
        if recovered is None:
            result["recovered"] = False
            self.log(f"fault: {fault.name} NOT recovered within {RECOVER_TIMEOUT_S} s")
        else:
            result["recovered"] = True
            result["recovery_s"] = round(recovered - result["injected_at"], 2)
            if "resumed_at" in result:
                result["recovery_after_resume_s"] = round(recovered - result["resumed_at"], 2)
            self.log(f"fault: {fault.name} recovered in {result['recovery_s']} s")
        if migrating is not None:  # the HTTP status of the pass the kill interrupted
            migrating.join(timeout=60)
            result["pass_during_kill"] = getattr(migrating, "outcome", "no answer yet")
        if fault.kind == "kill -9":
            restarted = actor_pids(self.stack.head_id, ACTOR_TITLES[fault.name])
            result["restarted"] = bool(restarted) and result["pid"] not in restarted
        return result

    def _start_pass(self) -> threading.Thread:
        """A migration pass asked for, so the kill lands while the migrator works."""

        def ask() -> None:
            try:
                answer = self.http.post("/v1/tiers/migrate", timeout=RECOVER_TIMEOUT_S)
                thread.outcome = answer.status_code  # type: ignore[attr-defined]
            except httpx.HTTPError as exc:
                thread.outcome = type(exc).__name__  # type: ignore[attr-defined]

        thread = threading.Thread(target=ask, daemon=True)
        thread.start()
        time.sleep(2.0)
        return thread

    def _await_recovery(self, name: str, since: float) -> float | None:
        deadline = since + RECOVER_TIMEOUT_S
        while time.time() < deadline:
            if self._healthy() and self._probe(name):
                return time.time()
            time.sleep(0.5)
        return None

    def _healthy(self) -> bool:
        try:
            answer = self.http.get("/healthz")
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json().get("status") == "ok"

    def _search_whole(self, days: float, **extra: Any) -> bool:
        body = {
            "vector": self.vector,
            "start": (datetime.now(UTC) - timedelta(days=days)).isoformat(),
            "limit": 5,
            **extra,
        }
        answer = self.http.post("/v1/search", json=body)
        return answer.status_code == 200 and not answer.json()["partial"]

    def _probe(self, name: str) -> bool:
        """A call that needs the faulted component, answered whole."""
        try:
            if name in ("hot-shard",):
                return self._search_whole(1)
            if name in ("warm", "milvus"):
                return self._search_whole(60)
            if name == "s3":
                return self._search_whole(400, include_cold=True)
            if name in ("timeseries", "postgres"):
                now = datetime.now(UTC)
                params = {
                    "metric_name": "fleet.latency_ms",
                    "start": (now - timedelta(hours=1)).isoformat(),
                    "end": now.isoformat(),
                    "bucket": "5m",
                }
                return self.http.get("/v1/metrics/query", params=params).status_code == 200
            if name in ("graph", "bolt"):
                return self.http.get("/v1/graph/entities/probe:none").status_code == 404
            if name == "embedder-replica":
                answer = self.http.post("/v1/search", json={"query": "probe", "limit": 1})
                return answer.status_code == 200
            return True  # the migrator: /healthz asks it
        except httpx.HTTPError:
            return False


def _gone(pid: int) -> bool:
    """Exited (or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _failed(row: dict[str, Any]) -> bool:
    return row["status"] == 0 or row["status"] >= 500 or row["partial"]


def error_windows(rows: list[dict[str, Any]], results: list[dict], ended: float) -> None:
    """Add each fault's error window (from the request log) to its result."""
    injected = [r for r in results if "injected_at" in r]
    times = [r["injected_at"] for r in injected]

    def owner(row: dict[str, Any]) -> int:
        """The last fault injected before the request ended (-1: none): one that began just
        before a fault and ran into it failed of that fault, not of the one before."""
        return bisect.bisect_right(times, row["start"] + row["ms"] / 1000) - 1

    failed_by_fault: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if _failed(r):
            failed_by_fault.setdefault(owner(r), []).append(r)
    for i, result in enumerate(injected):
        start = times[i]
        end = times[i + 1] if i + 1 < len(times) else ended
        inside = [r for r in rows if start <= r["start"] < end]
        failed = failed_by_fault.get(i, [])
        statuses = Counter(str(r["status"]) for r in failed if not r["partial"])
        window: dict[str, Any] = {
            "requests": len(inside),
            "failed": len(failed),
            "partial_searches": sum(1 for r in failed if r["partial"]),
            "errors_by_status": dict(sorted(statuses.items())),
            "5xx_not_503": sum(1 for r in failed if r["status"] >= 500 and r["status"] != 503),
            "failed_routes": dict(Counter(r["route"] for r in failed).most_common()),
        }
        if failed:
            first = max(start, min(r["start"] for r in failed))
            last_end = max(r["start"] + r["ms"] / 1000 for r in failed)
            window |= {
                "first_error_after_s": round(first - start, 2),
                "error_window_s": round(last_end - first, 2),
            }
        else:
            window["error_window_s"] = 0.0
        result["window"] = window
