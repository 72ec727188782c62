"""Shared fixtures: one local Ray cluster for the whole session, started on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from akasha_ray import config, ray_internals
from akasha_ray.ports import free_port

VENV_BIN = str(Path(sys.executable).parent)


def run_bench(name: str, *args: str, timeout: float = 600) -> dict:
    """`python -m akasha_ray.bench <name> <args>` in a subprocess; its JSON report (the run
    must succeed: its stderr's tail is the failure message)."""
    run = subprocess.run(
        [sys.executable, "-m", "akasha_ray.bench", name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.fixture(scope="session")
def ray_cluster():
    """A fresh local Ray cluster (never one a developer already runs), with the job API on."""
    import ray

    # Job drivers started by this cluster must find this virtualenv's python.
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    ray_internals.serve_throughput_env(os.environ)  # Serve as `akasha up` starts it
    dashboard_port = free_port()
    context = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        log_to_driver=False,
    )
    yield {
        "gcs_address": context.address_info["gcs_address"],
        "dashboard_url": f"http://127.0.0.1:{dashboard_port}",
    }
    ray.shutdown()


@pytest.fixture
def settings(tmp_path) -> Iterator[config.Settings]:
    """Settings for an isolated Akasha: its own data dir and Ray namespace, whose actors are
    killed afterwards (they are detached: each test's would otherwise live to the session's end)."""
    import ray

    isolated = config.load(
        data_dir=tmp_path / "data",
        namespace=f"test-{uuid.uuid4().hex[:8]}",
        serve={"request_timeout_s": 1},  # how long migrated batches linger, among others
    )
    yield isolated
    if ray.is_initialized():
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == isolated.namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=isolated.namespace))
