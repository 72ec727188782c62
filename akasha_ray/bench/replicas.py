"""Serve replica counts over time, for a benchmark's report: a thread reads how many replicas of
each deployment run, every `interval_s`, while the load runs.

Two ways to read them: `serve_status()` asks Serve from a driver already attached to the
cluster (`serve.status()`); `dashboard_status(url, token)` asks the dashboard's REST API
(`GET /api/serve/applications/`, the token as a bearer when Ray's token auth is on), for a
process that is not a driver of that cluster (a load generator beside an `akasha up` head).

    with ReplicaSampler(dashboard_status(url, token)) as sampler:
        run_load()
    report["replicas"] = sampler.report()
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

# {deployment: replicas RUNNING}; a deployment of another application is "app/deployment".
Counts = dict[str, int]
Reader = Callable[[], Counts]
RUNNING = "RUNNING"


def serve_status(app: str = "akasha") -> Reader:
    """Reads `serve.status()` (this process must be a driver of the cluster)."""

    def read() -> Counts:
        from ray import serve
        from ray.exceptions import RayError

        try:
            status = serve.status()
        except RayError as exc:  # the controller or the GCS restarting: a failed read
            raise RuntimeError(str(exc)) from exc
        counts: Counts = {}
        for name, application in status.applications.items():
            for deployment, overview in application.deployments.items():
                states = overview.replica_states.items()
                running = sum(n for s, n in states if str(getattr(s, "value", s)) == RUNNING)
                counts[_name(app, name, deployment)] = running
        return counts

    return read


def dashboard_status(
    dashboard_url: str, token: str | None = None, app: str = "akasha", timeout_s: float = 5.0
) -> Reader:
    """Reads the dashboard's Serve API (any process that can reach the dashboard)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def read() -> Counts:
        answer = httpx.get(
            f"{dashboard_url.rstrip('/')}/api/serve/applications/",
            headers=headers,
            timeout=timeout_s,
        )
        answer.raise_for_status()
        counts: Counts = {}
        for name, application in (answer.json().get("applications") or {}).items():
            for deployment, details in (application.get("deployments") or {}).items():
                running = [r for r in details.get("replicas", []) if r.get("state") == RUNNING]
                counts[_name(app, name, deployment)] = len(running)
        return counts

    return read


def _name(app: str, application: str, deployment: str) -> str:
    return deployment if application == app else f"{application}/{deployment}"


class ReplicaSampler:
    """Samples `read()` every `interval_s` on a daemon thread until `stop()` (or the `with`
    block's end). A read that fails (the head restarting, the dashboard busy) is counted in
    `errors` with its time and the sampling goes on: a gap, not a made-up count."""

    def __init__(self, read: Reader, interval_s: float = 1.0) -> None:
        self.read = read
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-sampler", daemon=True)
        self._started = 0.0

    def start(self) -> ReplicaSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> ReplicaSampler:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self

    def __enter__(self) -> ReplicaSampler:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            at = round(time.monotonic() - self._started, 2)
            try:
                self.samples.append({"t_s": at, "replicas": self.read()})
            except (httpx.HTTPError, ConnectionError, TimeoutError, OSError, RuntimeError) as exc:
                self.errors.append({"t_s": at, "error": f"{type(exc).__name__}: {exc}"[:300]})
            self._stop.wait(self.interval_s)

    def series(self, deployment: str) -> list[tuple[float, int]]:
        """(seconds since start, replicas) of one deployment, in order."""
        return [
            (s["t_s"], s["replicas"][deployment])
            for s in self.samples
            if deployment in s["replicas"]
        ]

    def report(self) -> dict[str, Any]:
        """Per deployment: first, min, max and last count, and the samples where it changed;
        plus every sample and the failed reads, for a benchmark's JSON."""
        names = sorted({name for s in self.samples for name in s["replicas"]})
        summary = {}
        for name in names:
            counts = self.series(name)
            changes = [counts[0]] + [c for p, c in itertools.pairwise(counts) if c[1] != p[1]]
            values = [n for _, n in counts]
            summary[name] = {
                "first": values[0],
                "min": min(values),
                "max": max(values),
                "last": values[-1],
                "changes": [{"t_s": t, "replicas": n} for t, n in changes],
            }
        return {
            "interval_s": self.interval_s,
            "deployments": summary,
            "samples": self.samples,
            "failed_reads": self.errors,
        }
