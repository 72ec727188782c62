"""Builds the Akasha Serve application; `serve run serve_apps/akasha.yaml` imports `build`."""

from __future__ import annotations

from typing import Any

from ray.serve import Application
from ray.serve.schema import LoggingConfig

from akasha_ray import config
from serve_apps.admission import OWN_DEADLINE_S
from serve_apps.api import AkashaAPI
from serve_apps.embedder import EmbedderDeployment


def build(args: dict[str, Any] | None = None) -> Application:
    """An application builder: `args` (from the Serve config file) override the configuration."""
    settings = config.load(**(args or {}))
    return bind(settings)


def bind(settings: config.Settings) -> Application:
    serving = settings.serve
    # Serve's JSON log lines carry the request id (X-Request-ID, or one Serve made).
    logs = LoggingConfig(encoding=serving.log_encoding)
    # Bounded work (README, "Bounded work"). Serve hands an ingress replica up to twice what
    # its own admission (serve_apps/admission.py) takes, ongoing + queued, so that the replica
    # answers the overflow at once, as a 503 JSON with a Retry-After from its queue. Serve's
    # proxy keeps at most max_queued more per replica and rejects the rest (its own 503): a
    # backstop, since a full replica makes the proxy's router poll it, at a CPU cost that
    # grew with the clients (bench clients: 0.72x the best rate at 256 clients).
    ongoing = serving.max_ongoing_requests + serving.max_ongoing_ingests  # both lanes
    handed = 2 * (ongoing + serving.max_queued_requests + serving.max_queued_ingests)
    backpressure = {"retry_after_s": serving.retry_after_s}
    ingresses = serving.most_ingress_replicas()
    embedder = EmbedderDeployment.options(
        **_replicas(serving, serving.embedder_replicas),
        ray_actor_options={"num_cpus": 0.5},
        logging_config=logs,
        # Every ongoing ingress request may be waiting on an embedding: the embedder orders the
        # work itself (queries first, bulk in chunks), so it takes them all at once.
        max_ongoing_requests=ongoing * ingresses,
        max_queued_requests=(serving.max_queued_requests + serving.max_queued_ingests) * ingresses,
        backpressure_config=backpressure,
    ).bind(settings.embedding.model_dump(), serving.model_dump())
    return AkashaAPI.options(
        **_replicas(serving, serving.ingress_replicas),
        ray_actor_options={"num_cpus": 0.25},
        logging_config=logs,
        max_ongoing_requests=handed,
        max_queued_requests=serving.max_queued_requests,
        backpressure_config=backpressure,
    ).bind(embedder, config.to_dict(settings))


def _replicas(serving: config.ServeConfig, fixed: int) -> dict[str, Any]:
    """A fixed replica count, or Serve's autoscaling (serve.autoscaling). Its target stays at
    most max_ongoing_requests (config checks it), so a deployment scales out before its
    replicas queue, and the admission bounds above hold per replica whatever their number."""
    if serving.autoscaling is None:
        return {"num_replicas": fixed}
    return {"autoscaling_config": serving.autoscaling.model_dump()}


def http_options(settings: config.Settings) -> dict[str, Any]:
    """Serve's proxy options: its request timeout is the backstop behind the ingress's own
    deadline (the longest one: a migration's)."""
    serving = settings.serve
    longest = max(serving.http_timeout_s, *OWN_DEADLINE_S.values())
    return {"host": serving.host, "port": serving.port, "request_timeout_s": longest + 30}
