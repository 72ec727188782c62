"""What an operator watches: Prometheus metrics, JSON logs, request ids.

Metrics are Ray's own (`ray.util.metrics`): every process (ingress replicas, actors) records into
its node's metrics agent, which exports them on the node's metrics port with the prefix `ray_`
(`ray start --metrics-export-port`, 8080 on KubeRay pods). The ingress' `/metrics` route gathers
the `ray_akasha_*` series of every alive node, drops the prefix, and adds the store health read at
scrape time, so one scrape of Akasha's HTTP port sees the whole cluster.

No label carries tenant data: routes are path templates (`/v1/memories/{memory_id}`, never the
id), the rest are tiers, components, hops, methods and status codes. That is why `/metrics` needs
no key.

Logs: `json_logs()` writes Akasha's loggers as one JSON object a line on stderr (Ray keeps it in
the session's `logs/worker-*.err`), with the request id of the HTTP request that caused the line;
`carries_request_id` lets an actor method receive that id from the ingress.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import re
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "akasha_"
RAY_PREFIX = "ray_"
REQUEST_ID_HEADER = "x-request-id"
LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
# Labels Ray adds that say nothing to an operator (constant per exporter).
DROPPED_LABELS = {"otel_scope_name", "otel_scope_schema_url", "otel_scope_version", "SessionName"}
SCRAPE_TIMEOUT_S = 5.0

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "akasha_request_id", default=None
)

# -- request ids ----------------------------------------------------------------------------------


def request_id() -> str | None:
    """The id of the HTTP request this code runs for, if any."""
    return _request_id.get()


def _serve_request_id() -> str | None:
    """Serve's id for the current request: its proxy takes `X-Request-ID` or makes one, logs
    it and returns it (Ray 2.60, a private accessor: None if it moved)."""
    try:
        from ray.serve.context import _get_serve_request_context
    except ImportError:
        return None
    return _get_serve_request_context().request_id or None


def carries_request_id(method: Callable) -> Callable:
    """An actor method that takes `request_id=` (keyword) and logs under it.

    Ray checks call arguments against the method's signature, so the wrapper's signature is the
    method's plus a keyword-only `request_id`."""
    signature = inspect.signature(method)
    parameters = list(signature.parameters.values())
    extra = inspect.Parameter("request_id", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(parameters) if p.kind is p.VAR_KEYWORD), len(parameters))
    parameters.insert(at, extra)

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def wrapper(*args: Any, request_id: str | None = None, **kwargs: Any) -> Any:
            token = _request_id.set(request_id)
            try:
                return await method(*args, **kwargs)
            finally:
                _request_id.reset(token)
    else:

        @functools.wraps(method)
        def wrapper(*args: Any, request_id: str | None = None, **kwargs: Any) -> Any:
            token = _request_id.set(request_id)
            try:
                return method(*args, **kwargs)
            finally:
                _request_id.reset(token)

    # Ray unwraps actor methods (inspect.unwrap) before reading their signature: no __wrapped__.
    del wrapper.__wrapped__
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return wrapper


# -- logs -----------------------------------------------------------------------------------------

# Anything shaped like an API key or a bearer credential, should a message ever carry one.
_SECRET = re.compile(r"\bak_[A-Za-z0-9_-]{16,}|(?i:bearer)\s+\S+")
_LOGGERS = ("akasha", "akasha_ray", "actors", "serve_apps")


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, where it ran."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "asctime": self.formatTime(record),
            "levelname": record.levelname,
            "name": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id(),
            "filename": record.filename,
            "lineno": record.lineno,
            "process": record.process,
        }
        if record.exc_info:
            line["exc_text"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


_configured = False


def json_logs(level: int = logging.INFO) -> None:
    """Akasha's loggers as JSON lines on stderr, in this process (idempotent)."""
    global _configured
    if _configured:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # not a second, plain copy through the root logger
    _configured = True


# -- metrics recorded by each process -------------------------------------------------------------


class _Metrics:
    """Ray metrics, made on first use in each process (they need a connected Ray worker)."""

    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(
            "akasha_http_requests_total",
            "HTTP requests answered, by route template, method and status.",
            tag_keys=("route", "method", "status"),
        )
        self.latency = metrics.Histogram(
            "akasha_http_request_seconds",
            "HTTP request latency in the ingress, by route template and method.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("route", "method"),
        )
        self.tier_latency = metrics.Histogram(
            "akasha_tier_search_seconds",
            "Latency of one tier's part of a search, by tier.",
            boundaries=LATENCY_BUCKETS_S,
            tag_keys=("tier",),
        )
        self.tier_errors = metrics.Counter(
            "akasha_tier_search_errors_total",
            "Searches a tier did not answer in time or failed (the answer was marked partial).",
            tag_keys=("tier",),
        )
        self.ingested = metrics.Counter(
            "akasha_memories_ingested_total",
            "New memories stored, by the tier they went to.",
            tag_keys=("tier",),
        )
        self.migrated = metrics.Counter(
            "akasha_memories_migrated_total",
            "Memories moved between tiers by the migrator, by hop (hot_to_warm, ...).",
            tag_keys=("hop",),
        )
        self.passes = metrics.Counter(
            "akasha_migration_passes_total",
            "Migration passes, by outcome (ok, error).",
            tag_keys=("outcome",),
        )
        # Set by each ingress replica's admission (serve_apps/admission.py) as its lanes change.
        self.admission_requests = metrics.Gauge(
            "akasha_admission_requests",
            "Requests in an ingress replica's admission lane (ingests: POST /v1/memories; "
            "requests: the rest), by lane and state (running, waiting).",
            tag_keys=("lane", "state"),
        )
        self.admission_refused = metrics.Counter(
            "akasha_admission_refused_total",
            "Requests an ingress replica answered 503 with Retry-After, by lane and reason "
            "(full: the lane's running and waiting bounds were reached; deadline: no answer "
            "within the request deadline).",
            tag_keys=("lane", "reason"),
        )
        # Set by each region-<name> coordinator (actors/region.py) every witness_check_s.
        self.replication_lag = metrics.Gauge(
            "akasha_replication_lag_seconds",
            "Age of the oldest change not yet shipped to (duty ship) or applied from (duty "
            "apply) another region; 0 when caught up.",
            tag_keys=("region", "duty"),
        )
        self.replication_lag_changes = metrics.Gauge(
            "akasha_replication_lag_changes",
            "Changes not yet shipped to (ship) or applied from (apply) another region.",
            tag_keys=("region", "duty"),
        )


@functools.cache
def _metrics() -> _Metrics:
    return _Metrics()


def route_of(scope: Mapping[str, Any]) -> str:
    """The matched route's path template; never the raw path, which holds ids."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.requests.inc(1, tags={"route": route, "method": method, "status": str(status)})
    m.latency.observe(seconds, tags={"route": route, "method": method})


def observe_tiers(answers: Mapping[str, Any]) -> None:
    """Per tier of one search: `latency_ms` and `error` of each TierAnswer."""
    m = _metrics()
    for tier, answer in answers.items():
        m.tier_latency.observe(answer.latency_ms / 1000, tags={"tier": tier})
        if answer.error is not None:
            m.tier_errors.inc(1, tags={"tier": tier})


def count_ingested(per_tier: Mapping[str, int]) -> None:
    m = _metrics()
    for tier, count in per_tier.items():
        if count:
            m.ingested.inc(count, tags={"tier": tier})


def count_migration(report: Mapping[str, Any] | None, ok: bool) -> None:
    """A finished pass: `report` maps a hop to its counts (an int, or a dict with `moved`)."""
    m = _metrics()
    m.passes.inc(1, tags={"outcome": "ok" if ok else "error"})
    for hop, counts in (report or {}).items():
        moved = counts.get("moved", 0) if isinstance(counts, Mapping) else counts
        if isinstance(moved, int) and moved > 0:
            m.migrated.inc(moved, tags={"hop": str(hop)})


def set_lane(lane: str, running: int, waiting: int) -> None:
    m = _metrics()
    m.admission_requests.set(running, tags={"lane": lane, "state": "running"})
    m.admission_requests.set(waiting, tags={"lane": lane, "state": "waiting"})


def count_refused(lane: str, reason: str) -> None:
    _metrics().admission_refused.inc(1, tags={"lane": lane, "reason": reason})


def set_replication_lag(region: str, duty: str, seconds: float, changes: int | None) -> None:
    """One region coordinator's lag (`changes` None: unknown, its bucket is down)."""
    m = _metrics()
    tags = {"region": region, "duty": duty}
    m.replication_lag.set(seconds, tags=tags)
    if changes is not None:
        m.replication_lag_changes.set(changes, tags=tags)


class RequestMetrics:
    """ASGI middleware: the request id in a context variable (for logs and actor calls) and in
    the response, and each request's route, status and latency in the metrics."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        serve_id = _serve_request_id()  # under Serve, its proxy already returns the header
        rid = serve_id or _header(scope, REQUEST_ID_HEADER) or uuid.uuid4().hex
        token = _request_id.set(rid)
        status = 500  # what the client sees if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if serve_id is None:
                    headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)
            observe_request(
                route_of(scope), scope.get("method", ""), status, time.perf_counter() - started
            )


def _header(scope: Mapping[str, Any], name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key.decode("latin-1").lower() == name:
            text = value.decode("latin-1")
            # Only a sane id is kept as is (it ends up in every log line of the request).
            return text if re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", text) else None
    return None


# -- the /metrics scrape --------------------------------------------------------------------------


def _node_targets() -> list[str]:
    """The metrics export URL of every alive Ray node."""
    import ray

    return [
        f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
        for n in ray.nodes()
        if n.get("Alive") and n.get("MetricsExportPort")
    ]


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return response.read().decode("utf-8")


def akasha_families(texts: Iterable[str]) -> list[Metric]:
    """The `ray_akasha_*` families of several exports, merged by name, `ray_` dropped."""
    merged: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(RAY_PREFIX + PREFIX):
                continue
            name = family.name.removeprefix(RAY_PREFIX)
            target = merged.get(name)
            if target is None:
                target = merged[name] = Metric(name, family.documentation, family.type)
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if k not in DROPPED_LABELS}
                target.samples.append(
                    sample._replace(name=sample.name.removeprefix(RAY_PREFIX), labels=labels)
                )
    return list(merged.values())


def health_families(report: Mapping[str, Any]) -> list[Metric]:
    """Store health as read at scrape time (`/healthz`'s report)."""
    up = GaugeMetricFamily(
        "akasha_component_up",
        "1 when the component answered ok, else 0 (down, failing).",
        labels=["component"],
    )
    memories = GaugeMetricFamily(
        "akasha_hot_shard_memories", "Memories held by a hot shard.", labels=["shard"]
    )
    for name, component in report.get("components", {}).items():
        up.add_metric([name], 1.0 if component.get("status") == "ok" else 0.0)
        if name.startswith("hot-") and "memories" in component:
            memories.add_metric([name], float(component["memories"]))
    return [up, memories]


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


async def scrape(health: Mapping[str, Any]) -> bytes:
    """The text exposition `/metrics` returns. A node that does not answer is left out (its
    series reappear at the next scrape)."""
    targets = await asyncio.to_thread(_node_targets)
    texts = await asyncio.gather(
        *(asyncio.to_thread(_fetch, url) for url in targets), return_exceptions=True
    )
    answered = [t for t in texts if isinstance(t, str)]
    up = GaugeMetricFamily(
        "akasha_metrics_nodes", "Ray nodes whose metrics this scrape read, of those alive."
    )
    up.add_metric([], float(len(answered)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*akasha_families(answered), *health_families(health), up]))
    return generate_latest(registry)
