"""A whole Akasha (Ray, its actors, the Serve app) on a local cluster, for the HTTP half of a
benchmark; it opens the data dir the in-process half wrote."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


@contextlib.contextmanager
def served_akasha(
    data_dir: Path, *, port: int, cpus: int = 2, **overrides: Any
) -> Iterator[httpx.Client]:
    """An HTTP client (admin key set) for an Akasha serving `data_dir` on 127.0.0.1:`port`."""
    import ray
    from ray import serve

    from akasha_ray import config, ray_internals
    from akasha_ray.auth import read_admin_key
    from akasha_ray.client import wait_healthy
    from serve_apps.app import bind

    serve_overrides = {**overrides.pop("serve", {}), "port": port}
    settings = config.load(
        data_dir=data_dir, namespace="akasha-bench", serve=serve_overrides, **overrides
    )
    # Ray prints to stdout; a benchmark's stdout is for its JSON report alone.
    ray_internals.serve_throughput_env(os.environ)  # as `akasha up` starts its cluster
    with contextlib.redirect_stdout(sys.stderr):
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        try:
            started = time.perf_counter()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(bind(settings), name="akasha", route_prefix="/")
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            print(f"Akasha served in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            headers = {"Authorization": f"Bearer {read_admin_key(settings.data_dir)}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                yield http
        finally:
            serve.shutdown()
            ray.shutdown()


def post_search(http: httpx.Client, body: bytes) -> dict[str, Any]:
    """POST /v1/search with a JSON body already encoded (kept out of the timed part)."""
    response = http.post("/v1/search", content=body, headers={"Content-Type": "application/json"})
    response.raise_for_status()
    return response.json()
