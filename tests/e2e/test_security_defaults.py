"""`akasha up` on its own Ray head: loopback only, token auth, a private data dir, a /healthz that
tells strangers only ok or degraded, and a restart after `kill -9` that never hangs.

The head here is this module's own: its own RAY_TMPDIR (so its `ray_current_cluster`), its own
token file, its processes found by the head id `akasha up` puts in their environment. Nothing here
runs `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from akasha_ray import local_cluster
from akasha_ray.client import AkashaClient
from akasha_ray.ports import free_port
from tests.conftest import VENV_BIN

pytestmark = pytest.mark.e2e

SYSTEM = "sec-bot"


def _run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _marker(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / local_cluster.MARKER).read_text())


@pytest.fixture(scope="module")
def head() -> Iterator[dict[str, Any]]:
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
        "AKASHA_NAMESPACE": "akasha-sec",
        "AKASHA_SERVE__PORT": str(port),
        "AKASHA_TIERS__HOT_TARGET_P95_MS": "null",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    akasha_bin = str(Path(sys.executable).with_name("akasha"))
    started = _run([akasha_bin, "up"], env)
    state: dict[str, Any] = {"env": env, "data_dir": data_dir, "ray_tmp": ray_tmp}
    try:
        assert started.returncode == 0, (
            started.stdout + started.stderr + _keyed_health(port, data_dir)
        )
        state |= {
            "up_stdout": started.stdout,
            "url": f"http://127.0.0.1:{port}",
            "port": port,
            "akasha_bin": akasha_bin,
            "admin_key": (data_dir / "admin.key").read_text().strip(),
            "token": (ray_tmp / "auth_token").read_text().strip(),
            **_marker(data_dir),
        }
        yield state
    finally:
        _run([akasha_bin, "down"], env, timeout=300)
        for head_id in [*state.get("head_ids", []), state.get("head_id"), _marker_id(data_dir)]:
            if head_id:
                local_cluster.stop_head(head_id)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _keyed_health(port: int, data_dir: Path) -> str:
    """What /healthz tells the admin, to say why a start failed."""
    try:
        key = (data_dir / "admin.key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"http://127.0.0.1:{port}/healthz", headers=headers, timeout=30).text
    except (OSError, httpx.HTTPError) as exc:
        return f"(no health: {exc!r})"


def _marker_id(data_dir: Path) -> str | None:
    try:
        return _marker(data_dir)["head_id"]
    except (FileNotFoundError, KeyError):
        return None


def test_up_says_it_started_a_loopback_head(head):
    assert f"Started a local Ray head at {head['address']}" in head["up_stdout"]
    assert head["address"].startswith("127.0.0.1:")
    assert "token authentication on" in head["up_stdout"]
    assert head["token"] and stat.S_IMODE((head["ray_tmp"] / "auth_token").stat().st_mode) == 0o600


def test_healthz_without_a_key_says_only_ok_or_degraded(head):
    bare = httpx.get(f"{head['url']}/healthz", timeout=30)
    assert bare.status_code == 200 and bare.json() == {"status": "ok"}
    keyed = httpx.get(
        f"{head['url']}/healthz",
        headers={"Authorization": f"Bearer {head['admin_key']}"},
        timeout=30,
    ).json()
    assert keyed["status"] == "ok"
    assert {"hot-0", "hot-1", "embedder", "keys", "warm", "cold", "migrator"} <= set(
        keyed["components"]
    )
    wrong = httpx.get(
        f"{head['url']}/healthz", headers={"Authorization": "Bearer not-a-key"}, timeout=30
    )
    assert wrong.status_code == 401 and "components" not in wrong.text


def _listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket those processes listen on, from /proc."""
    owners: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in owners:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((owners[fields[9]], socket.inet_ntop(family, packed), int(hex_port, 16)))
    return found


def _is_loopback(address: str) -> bool:
    return address in {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def test_every_server_of_the_head_listens_on_loopback_only(head):
    pids = local_cluster.head_pids(head["head_id"])
    assert len(pids) >= 4  # gcs_server, raylet, dashboard, workers...
    listening = _listening(pids)
    ports = {port for _, _, port in listening}
    gcs_port = int(head["address"].rsplit(":", 1)[1])
    dashboard_port = int(head["dashboard_url"].rsplit(":", 1)[1])
    assert {gcs_port, dashboard_port, head["port"]} <= ports, listening
    outside = [
        (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(), address, port)
        for pid, address, port in listening
        if not _is_loopback(address)
    ]
    # Serve replicas' inter-deployment gRPC servers included (Ray binds them to [::]; Akasha's
    # worker setup hook rebinds them to 127.0.0.1 on a head it started).
    assert outside == []


def _ray_client(head, **env: str) -> subprocess.Popen:
    code = (
        "import ray\n"
        f"ray.init(address={head['address']!r}, log_to_driver=False)\n"
        "print('CPUS', ray.cluster_resources()['CPU'])\n"
    )
    base = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH")}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**base, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_ray_refuses_a_client_without_the_token(head):
    clients = {
        "none": _ray_client(head, RAY_AUTH_MODE="disabled"),
        "wrong": _ray_client(head, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token"),
        "right": _ray_client(
            head, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(head["ray_tmp"] / "auth_token")
        ),
    }
    outputs = {name: proc.communicate(timeout=180)[0] for name, proc in clients.items()}
    assert clients["right"].returncode == 0 and "CPUS" in outputs["right"], outputs["right"]
    for name in ("none", "wrong"):
        assert clients[name].returncode != 0, outputs[name]
        assert "CPUS" not in outputs[name]
        assert "Unauthenticated" in outputs[name] or "token" in outputs[name].lower()
    jobs = f"{head['dashboard_url']}/api/jobs/"
    assert httpx.get(jobs, timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {head['token']}"}
    assert httpx.get(jobs, headers=bearer, timeout=30).status_code == 200


def test_ray_job_submit_works_with_the_token(head):
    ray_bin = str(Path(sys.executable).with_name("ray"))
    entry = "import ray; ray.init(); print('job sees', int(ray.cluster_resources()['CPU']), 'cpus')"
    command = [ray_bin, "job", "submit", "--address", head["dashboard_url"], "--", "python", "-c"]
    base = {k: v for k, v in head["env"].items() if k != "RAY_AUTH_MODE"}
    refused = _run([*command, entry], base, timeout=300)
    assert refused.returncode != 0 and "job sees" not in refused.stdout
    assert "authentication token" in (refused.stdout + refused.stderr).lower()
    # The dashboard takes job submissions once its agent has registered, which on a loaded
    # machine may be some seconds after `akasha up` returns; Ray says "try again later".
    deadline = time.monotonic() + 120
    while True:
        done = _run([*command, entry], {**base, "RAY_AUTH_MODE": "token"}, timeout=300)
        not_ready = "No available agent" in done.stdout + done.stderr
        if not (not_ready and time.monotonic() < deadline):
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job sees" in done.stdout


def _modes(data_dir: Path, skip: tuple[str, ...] = ()) -> tuple[int, list[tuple[str, str]]]:
    """How many files are under `data_dir`, and every entry that is not 0700 (dir) / 0600."""
    loose = []
    files = 0
    for root, dirs, names in os.walk(data_dir):
        dirs[:] = [
            d for d in dirs if os.path.join(root, d) not in {str(data_dir / s) for s in skip}
        ]
        for name, want in [(d, 0o700) for d in dirs] + [(n, 0o600) for n in names]:
            info = os.lstat(os.path.join(root, name))
            if stat.S_ISLNK(info.st_mode):
                continue
            files += stat.S_ISREG(info.st_mode)
            if stat.S_IMODE(info.st_mode) != want:
                loose.append((os.path.join(root, name), oct(stat.S_IMODE(info.st_mode))))
    return files, loose


def test_data_dir_is_0700_and_its_files_0600(head):
    with AkashaClient(head["url"], head["admin_key"]) as client:
        head["memory_id"] = client.ingest(
            [
                {
                    "system_id": SYSTEM,
                    "conversation_id": "c1",
                    "content": "the blue notebook is in the top drawer",
                }
            ],
            progress=False,
        )[0]
    data_dir = head["data_dir"]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files, loose = _modes(data_dir)
    assert files >= 4  # admin key, manifest, marker, hot shard files...
    assert loose == []


def test_kill_9_of_the_head_then_up_brings_it_all_back(head):
    if "memory_id" not in head:
        pytest.skip("needs the memory stored by the data dir test")
    old_id = head["head_id"]
    head.setdefault("head_ids", []).append(old_id)
    pids = local_cluster.head_pids(old_id)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while local_cluster.head_pids(old_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local_cluster.head_pids(old_id) == []
    recorded = (head["ray_tmp"] / "ray" / "ray_current_cluster").read_text().strip()
    assert recorded == head["address"]  # what made `akasha up` hang before

    again = _run([head["akasha_bin"], "up"], head["env"], timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "does not answer" in again.stdout and "Starting a new Ray head" in again.stdout
    new_head = _marker(head["data_dir"])
    assert new_head["head_id"] != old_id
    head["head_ids"].append(new_head["head_id"])
    with AkashaClient(head["url"], head["admin_key"]) as client:
        memory = client.get(head["memory_id"], system_id=SYSTEM)
        health = client.health()
    assert memory["content"] == "the blue notebook is in the top drawer"
    assert health["status"] == "ok", health
    assert all(c["status"] == "ok" for c in health["components"].values()), health


def test_down_stops_this_head_and_forgets_its_address(head):
    head_id = _marker(head["data_dir"])["head_id"]
    assert local_cluster.head_pids(head_id)
    done = _run([head["akasha_bin"], "down"], head["env"], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "local Ray cluster shut down" in done.stdout
    assert local_cluster.head_pids(head_id) == []
    assert not (head["ray_tmp"] / "ray" / "ray_current_cluster").exists()
    assert not (head["data_dir"] / local_cluster.MARKER).exists()


def test_a_cluster_akasha_joined_gets_private_files_too(akasha, admin):
    """The session's cluster was not started by Akasha (default umask): `akasha up` joined it."""
    admin.ingest(
        [{"system_id": "sec-joined", "conversation_id": "c1", "content": "joined cluster note"}],
        progress=False,
    )
    data_dir = Path(akasha["data_dir"])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    # Checkpoints of `ray job submit` jobs are their drivers' own, outside Akasha's job.
    files, loose = _modes(data_dir, skip=("jobs",))
    assert files >= 4
    assert loose == []
