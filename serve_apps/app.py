"""Builds the Akasha Serve application; `serve run serve_apps/akasha.yaml` imports `build`."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from akasha_ray import config
from serve_apps.api import AkashaAPI
from serve_apps.embedder import EmbedderDeployment


def build(args: dict[str, Any] | None = None) -> Application:
    """An application builder: `args` (from the Serve config file) override the configuration."""
    settings = config.load(**(args or {}))
    return bind(settings)


def bind(settings: config.Settings) -> Application:
    serving = settings.serve
    embedder = EmbedderDeployment.options(
        num_replicas=serving.embedder_replicas,
        ray_actor_options={"num_cpus": 0.5},
    ).bind(settings.embedding.model_dump(), serving.model_dump())
    return AkashaAPI.options(
        num_replicas=serving.ingress_replicas,
        ray_actor_options={"num_cpus": 0.25},
    ).bind(embedder, config.to_dict(settings))
