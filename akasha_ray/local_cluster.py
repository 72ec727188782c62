"""Start, join and stop the local Ray cluster that `akasha up` runs on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ray

from akasha_ray.config import Settings
from akasha_ray.errors import ConfigError

MARKER = "ray-head.json"  # written when Akasha started the head itself, so `down` stops it


def ray_bin() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise ConfigError("the `ray` command is not installed next to this Python")
    return found


def connect(settings: Settings, *, start: bool = True) -> str:
    """Join the configured or running cluster; start a local head when there is none."""
    address = settings.ray_address or "auto"
    try:
        ray.init(address=address, namespace=settings.namespace, log_to_driver=False)
        return address
    except ConnectionError:
        if settings.ray_address or not start:
            raise
    _start_head(settings)
    ray.init(address="auto", namespace=settings.namespace, log_to_driver=False)
    return "auto"


def _start_head(settings: Settings) -> None:
    env = dict(os.environ)
    # Job drivers (`ray job submit`) must find this environment's python and packages.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [
        ray_bin(),
        "start",
        "--head",
        f"--num-cpus={os.cpu_count() or 1}",
        "--dashboard-host=127.0.0.1",
        "--disable-usage-stats",
    ]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / MARKER).write_text(json.dumps({"started_by": "akasha up"}))


def stop_if_ours(settings: Settings) -> bool:
    marker = settings.data_dir / MARKER
    if not marker.exists():
        return False
    subprocess.run([ray_bin(), "stop"], check=False, stdout=subprocess.DEVNULL)
    marker.unlink()
    return True
