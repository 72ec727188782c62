"""The local cluster's parts that need no Ray: the bounded GCS probe, the stale address, scoped
stops, the token file, private data files."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from akasha_ray import config, local_cluster, private_files, ray_internals


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_probe_says_no_for_a_closed_port():
    assert not local_cluster.gcs_answers(f"127.0.0.1:{_closed_port()}", timeout_s=1)


def test_probe_says_no_for_a_port_that_accepts_but_never_answers():
    # A stopped or wedged process: the kernel completes the handshake, nothing speaks gRPC.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        assert not local_cluster.gcs_answers(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=1)


def test_probe_says_yes_for_a_grpc_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert local_cluster.gcs_answers(f"127.0.0.1:{port}", timeout_s=5)
    finally:
        server.stop(None)


@pytest.fixture
def ray_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "raytmp"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return tmp_path / "raytmp" / "ray"


def test_address_file_follows_ray_tmpdir(ray_tmp):
    assert ray_internals.address_file() == ray_tmp / "ray_current_cluster"


def test_a_dead_recorded_cluster_is_reported_not_waited_on(ray_tmp, tmp_path):
    ray_tmp.mkdir(parents=True)
    dead = f"127.0.0.1:{_closed_port()}"
    (ray_tmp / "ray_current_cluster").write_text(dead)
    settings = config.load(data_dir=tmp_path / "data")
    with pytest.raises(local_cluster.NoCluster, match="does not answer") as caught:
        local_cluster.connect(settings, start=False)
    assert dead in str(caught.value) and "ray_current_cluster" in str(caught.value)
    assert isinstance(caught.value, ConnectionError)  # what `akasha down` expects


def test_an_explicit_dead_address_is_an_error_not_a_hang(ray_tmp, tmp_path):
    dead = f"127.0.0.1:{_closed_port()}"
    settings = config.load(data_dir=tmp_path / "data", ray_address=dead)
    with pytest.raises(local_cluster.NoCluster, match=dead):
        local_cluster.connect(settings)


def test_nothing_recorded_and_no_start_is_no_cluster(ray_tmp, tmp_path):
    with pytest.raises(local_cluster.NoCluster, match="no Ray cluster is running"):
        local_cluster.connect(config.load(data_dir=tmp_path / "data"), start=False)


def test_free_port_prefers_the_default_and_steps_aside():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        other = local_cluster._free_port(port)
    assert other != port
    assert local_cluster._free_port(_closed_port()) > 0


def _sleeper(head_id: str | None, *, ignore_term: bool = False) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(local_cluster.HEAD_ID_ENV, None)
    if head_id:
        env[local_cluster.HEAD_ID_ENV] = head_id
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(300)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def test_stop_head_stops_that_head_only():
    ours, stubborn = _sleeper("head-a"), _sleeper("head-a", ignore_term=True)
    theirs, unmarked = _sleeper("head-b"), _sleeper(None)
    try:
        assert set(local_cluster.head_pids("head-a")) == {ours.pid, stubborn.pid}
        assert local_cluster.stop_head("head-a", grace_s=0.5) == 2
        assert ours.wait(10) is not None and stubborn.wait(10) is not None
        assert stubborn.returncode == -9  # ignored SIGTERM, so SIGKILL after the grace
        assert theirs.poll() is None and unmarked.poll() is None
    finally:
        for proc in (ours, stubborn, theirs, unmarked):
            proc.kill()
            proc.wait()


def test_token_file_is_created_private(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    path = tmp_path / "ray" / "auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert local_cluster.ensure_token() == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert len(token) == 64
    assert local_cluster.ensure_token() == str(path) and path.read_text() == token  # kept


def test_an_existing_readable_token_is_tightened(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    path = tmp_path / "auth_token"
    path.write_text("made-by-ray")
    path.chmod(0o644)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    local_cluster.ensure_token()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "made-by-ray"


def test_a_token_in_the_environment_needs_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "never"))
    assert local_cluster.ensure_token() == "$RAY_AUTH_TOKEN"
    assert not (tmp_path / "never").exists()


def test_tighten_makes_dirs_0700_and_files_0600_and_leaves_symlinks(tmp_path):
    data = tmp_path / "data"
    (data / "hot").mkdir(parents=True, mode=0o755)
    (data / "hot" / "shard.duckdb").write_text("x")
    (data / "hot" / "shard.duckdb").chmod(0o644)
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)
    private_files.private_dir(data)
    assert private_files.tighten(data) == 2
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "hot").stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "hot" / "shard.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_write_private_never_follows_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    (tmp_path / "marker").symlink_to(target)
    with pytest.raises(OSError):
        private_files.write_private(tmp_path / "marker", "x")
    assert target.read_text() == "keep"
    private_files.write_private(tmp_path / "plain", "y")
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o600


def test_a_dead_head_of_ours_is_named_and_its_leftovers_stopped_before_a_new_start(
    ray_tmp, tmp_path, monkeypatch
):
    data_dir = tmp_path / "data"
    private_files.private_dir(data_dir)
    dead = f"127.0.0.1:{_closed_port()}"
    marker = {"started_by": "akasha up", "head_id": "old-head", "address": dead}
    private_files.write_private(data_dir / local_cluster.MARKER, json.dumps(marker))
    settings = config.load(data_dir=data_dir)
    with pytest.raises(local_cluster.NoCluster, match="started for this data dir"):
        local_cluster.connect(settings, start=False)

    leftover = _sleeper("old-head")  # e.g. a worker that outlived its raylet, holding a file

    def stop_here(_settings):
        raise RuntimeError("a new head would start now")

    monkeypatch.setattr(local_cluster, "_start_head", stop_here)
    said: list[str] = []
    try:
        with pytest.raises(RuntimeError, match="a new head would start now"):
            local_cluster.connect(settings, say=said.append)
        assert leftover.wait(15) is not None
    finally:
        leftover.kill()
        leftover.wait()
    assert said and "does not answer" in said[0] and dead in said[0]


WORKER_SETUP_PROBE = """
import os, socket, grpc
from concurrent import futures
from akasha_ray import ray_internals
ray_internals.worker_setup()
from ray._common.tls_utils import add_port_to_grpc_server  # as serve's replica.py imports it
server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
port = add_port_to_grpc_server(server, "[::]:0")
server.start()
open("made", "w").close()
print(oct(os.stat("made").st_mode & 0o777), port)
tables = [open(f"/proc/net/{t}").read().splitlines()[1:] for t in ("tcp", "tcp6")]
for line in tables[0] + tables[1]:
    local, state = line.split()[1], line.split()[3]
    if state == "0A" and int(local.split(":")[1], 16) == port:
        print("LISTEN", local.split(":")[0])
server.stop(None)
"""


@pytest.mark.parametrize("single_machine", [True, False])
def test_worker_setup_hook_makes_files_private_and_replica_grpc_loopback(tmp_path, single_machine):
    env = {k: v for k, v in os.environ.items() if k != ray_internals.SINGLE_MACHINE_ENV}
    if single_machine:
        env[ray_internals.SINGLE_MACHINE_ENV] = "0"
    done = subprocess.run(
        [sys.executable, "-c", WORKER_SETUP_PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("0o600 ")
    listening = [line.split()[1] for line in lines[1:] if line.startswith("LISTEN")]
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
    assert listening
    if single_machine:
        assert set(listening) <= loopback
    else:  # Ray's own choice, untouched on a cluster Akasha did not start: [::]
        assert not set(listening) <= loopback
