"""An Akasha on a Ray head of its own (`akasha up` starting it), for tests that kill every
process and start again: its own RAY_TMPDIR (so its own `ray_current_cluster`), token file, data
dir and port. Processes are found by the head id `akasha up` puts in their environment; nothing
here runs `ray stop`, which would stop every Ray on the machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from akasha_ray import local_cluster
from akasha_ray.ports import free_port
from tests.conftest import VENV_BIN

AKASHA_BIN = str(Path(sys.executable).with_name("akasha"))


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def marker(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / local_cluster.MARKER).read_text())


@contextmanager
def own_akasha(namespace: str, **settings: str) -> Iterator[dict[str, Any]]:
    """`akasha up` on a new head; yields url, env, data_dir, admin_key; stops it afterwards.
    `settings` are extra AKASHA_* variables."""
    # Short: Ray's socket paths live under it and must stay under the kernel's 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="akh-", dir="/tmp"))
    data_dir = ray_tmp / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RAY_ADDRESS", "AKASHA_RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
        and not k.startswith("AKASHA_")
    }
    port = free_port()
    env |= {
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_TOKEN_PATH": str(ray_tmp / "auth_token"),
        "AKASHA_DATA_DIR": str(data_dir),
        "AKASHA_NAMESPACE": namespace,
        "AKASHA_SERVE__PORT": str(port),
        "AKASHA_TIERS__HOT_TARGET_P95_MS": "null",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **settings,
    }
    state: dict[str, Any] = {
        "env": env,
        "data_dir": data_dir,
        "ray_tmp": ray_tmp,
        "url": f"http://127.0.0.1:{port}",
        "head_ids": [],
    }
    try:
        up(state)
        state["admin_key"] = (data_dir / "admin.key").read_text().strip()
        yield state
    finally:
        run([AKASHA_BIN, "down"], env, timeout=300)
        for head_id in state["head_ids"]:
            local_cluster.stop_head(head_id)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def up(state: dict[str, Any]) -> subprocess.CompletedProcess:
    started = run([AKASHA_BIN, "up"], state["env"])
    with_marker = (state["data_dir"] / local_cluster.MARKER).exists()
    if with_marker:
        state["head_ids"].append(marker(state["data_dir"])["head_id"])
    assert started.returncode == 0, started.stdout + started.stderr
    return started


def kill_everything(state: dict[str, Any], *others: subprocess.Popen) -> int:
    """`kill -9` of every process of the head (GCS, raylet, every actor and Serve replica) and
    of `others`; returns how many were killed."""
    head_id = marker(state["data_dir"])["head_id"]
    pids = local_cluster.head_pids(head_id)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for process in others:
        process.kill()
    deadline = time.monotonic() + 30
    while local_cluster.head_pids(head_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local_cluster.head_pids(head_id) == []
    return len(pids)


WHERE_SCRIPT = """
import json, sys
import ray
from akasha_ray import config, local_cluster
from akasha_ray.memories.peers import Peers
settings = config.load()
local_cluster.connect(settings, start=False)
keys = json.load(sys.stdin)
peers = Peers(settings)
owners = [("hot", s) for s in peers.shards] + [("warm", peers.warm), ("cold", peers.cold)]
found = {k: [] for k in keys}
for tier, owner in owners:
    for key in ray.get(owner.existing.remote(keys), timeout=300):
        found[key].append(tier)
print(json.dumps(found))
"""


def where(state: dict[str, Any], keys: list[str]) -> dict[str, list[str]]:
    """Each memory key's tiers, asked of the tier owners themselves (in a driver of its own: this
    test process may already be attached to another Ray)."""
    done = subprocess.run(
        [sys.executable, "-c", WHERE_SCRIPT],
        input=json.dumps(keys),
        env=state["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
