"""Start, join and stop the local Ray cluster that `akasha up` runs on.

Which cluster: an explicit address (`ray_address` / `AKASHA_RAY_ADDRESS`, or `RAY_ADDRESS`) as
given; otherwise the one Ray recorded in `ray_current_cluster` (under `RAY_TMPDIR`, default
/tmp/ray) if its GCS answers within PROBE_TIMEOUT_S; otherwise a new head. A recorded address that
does not answer is a cluster that died (`kill -9`, a reboot): it is replaced, never waited on.
Every step is bounded, so `akasha up` cannot hang on a dead cluster.

The head Akasha starts is this machine's only: every Ray server binds 127.0.0.1, Ray's token
authentication is on (the token: RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
~/.ray/auth_token, created 0600 when missing), and its processes run with umask 077. Each of its
processes carries HEAD_ID_ENV in its environment, which is how `akasha down` stops that cluster
and no other (`ray stop` would stop every Ray process of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from akasha_ray import ray_internals
from akasha_ray.config import Settings
from akasha_ray.errors import ConfigError, Unavailable
from akasha_ray.private_files import PRIVATE_UMASK, private_dir, write_private

MARKER = "ray-head.json"  # written when Akasha started the head itself, so `down` stops it
HEAD_ID_ENV = "AKASHA_RAY_HEAD"
PROBE_TIMEOUT_S = 3.0
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
# Ray's usual ports when free (so `ray job submit --address http://127.0.0.1:8265` works as in
# Ray's docs), else any free one: another Ray on the machine must not stop `akasha up`. The
# dashboard agent's port too: with another Ray holding 52365, this head's agent cannot listen,
# and every job submission answers "No available agent" (seen in CI beside the tests' cluster).
DEFAULT_PORTS = {
    "port": 6379,
    "dashboard-port": 8265,
    "ray-client-server-port": 10001,
    "dashboard-agent-listen-port": 52365,
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
WORKER_SETUP_HOOK = "akasha_ray.ray_internals.worker_setup"


class NoCluster(Unavailable, ConnectionError):
    """No Ray cluster answers where Akasha looked."""


def ray_bin() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise ConfigError("the `ray` command is not installed next to this Python")
    return found


def connect(
    settings: Settings, *, start: bool = True, say: Callable[[str], None] | None = None
) -> str:
    """Join the configured or recorded cluster; start a local head when there is none.

    `say` hears what was done (joined, replaced a dead cluster, started). Returns the address."""
    say = say or (lambda _: None)
    explicit = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if explicit and explicit != "auto":
        if _parse(explicit) and not gcs_answers(explicit):
            raise NoCluster(
                f"the Ray cluster at {explicit} does not answer within {PROBE_TIMEOUT_S:g} s"
            )
        _init(explicit, settings)
        return explicit
    os.environ.pop("RAY_ADDRESS", None)  # "auto" would let Ray pick any cluster it finds
    ours = read_marker(settings) or {}
    recorded = recorded_address()
    candidates = [(recorded, f"recorded in {ray_internals.address_file()}")] if recorded else []
    if ours.get("address") and ours["address"] != recorded:
        candidates.append((ours["address"], "the head `akasha up` started for this data dir"))
    dead = []
    for address, source in candidates:
        if gcs_answers(address):
            _join(address, settings, ours=address == ours.get("address"))
            say(f"Joined the running Ray cluster at {address} ({source}).")
            return address
        dead.append(f"the Ray cluster {source} ({address})")
    stale = f"{' and '.join(dead)} does not answer within {PROBE_TIMEOUT_S:g} s" if dead else ""
    if not start:
        raise NoCluster("no Ray cluster is running" + (f": {stale}" if stale else ""))
    if stale:
        say(f"Starting a new Ray head: {stale} (it is gone).")
    if recorded:
        ray_internals.address_file().unlink(missing_ok=True)
    if "head_id" in ours:  # what is left of our dead head (workers, agents) may hold files open
        stop_head(ours["head_id"])
    head = _start_head(settings)
    _join(head["address"], settings, ours=True)
    say(
        f"Started a local Ray head at {head['address']}: listening on 127.0.0.1 only, token "
        f"authentication on (token: {head['token_from']}), dashboard {head['dashboard_url']}."
    )
    return head["address"]


def recorded_address() -> str | None:
    try:
        text = ray_internals.address_file().read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def gcs_answers(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a gRPC server answers at `address` within `timeout_s` (a connection alone is not
    enough: a stopped process still completes the TCP handshake)."""
    import grpc

    parsed = _parse(address)
    if parsed is None:
        return False
    try:
        with socket.create_connection(parsed, timeout=timeout_s):
            pass
    except OSError:  # refused (the usual after kill -9), unreachable, timed out
        return False
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
    return True


def _parse(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return None
    return host.strip("[]"), int(port)


def _join(address: str, settings: Settings, *, ours: bool = False) -> None:
    if _parse(address) and _parse(address)[0] in LOOPBACK:
        ray_internals.keep_loopback()
    # As `ray.init("auto")` does: a local cluster gets the token when one is at hand.
    if ours or (os.environ.get(ray_internals.AUTH_MODE_ENV) is None and _token_at_hand()):
        ray_internals.token_auth_on()
    try:
        _init(address, settings)
    except ConnectionError as exc:  # it answers but refuses us: most often the token
        raise Unavailable(
            f"the Ray cluster at {address} answers but would not let this process join ({exc}); "
            f"if it wants a token, give it as RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"
        ) from exc


def _init(address: str, settings: Settings) -> None:
    # Every worker of this job (its actors, the Serve replicas it deploys and the actors they
    # create inherit the job's runtime env) writes 0600 files, also on a cluster Akasha did not
    # start and whose umask it does not control.
    ray.init(
        address=address,
        namespace=settings.namespace,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": WORKER_SETUP_HOOK},
    )


def _token_at_hand() -> bool:
    if os.environ.get(ray_internals.TOKEN_ENV):
        return True
    return _token_path().exists()


def _token_path() -> Path:
    configured = os.environ.get(ray_internals.TOKEN_PATH_ENV)
    return Path(configured) if configured else ray_internals.default_token_path()


def ensure_token() -> str:
    """Where Ray will read the cluster token from; creates the token file (0600) if missing."""
    if os.environ.get(ray_internals.TOKEN_ENV):
        return f"${ray_internals.TOKEN_ENV}"
    path = _token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        info = os.lstat(path)
        # Ray writes it with the default umask (0644): a token others can read is no token.
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
            os.chmod(path, 0o600)
        return str(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return str(path)


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise Unavailable("no free TCP port on 127.0.0.1")


def _start_head(settings: Settings) -> dict[str, Any]:
    token = ensure_token()
    head_id = uuid.uuid4().hex
    ports = {name: _free_port(default) for name, default in DEFAULT_PORTS.items()}
    env = {
        **os.environ,
        # Job drivers (`ray job submit`) must find this environment's python and packages.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        ray_internals.AUTH_MODE_ENV: "token",
        ray_internals.SINGLE_MACHINE_ENV: "0",
        HEAD_ID_ENV: head_id,
    }
    env.pop("RAY_ADDRESS", None)
    ray_internals.serve_throughput_env(env)
    command = [
        ray_bin(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        *(f"--{name}={port}" for name, port in ports.items()),
        f"--num-cpus={os.cpu_count() or 1}",
        "--disable-usage-stats",
        *_gcs_fault_tolerance(settings, env, head_id),
    ]
    try:
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            umask=PRIVATE_UMASK,  # inherited by every Ray process, so by every actor's files
        )
    except subprocess.TimeoutExpired as exc:
        stop_head(head_id)
        raise Unavailable(f"`ray start` did not finish within {START_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        stop_head(head_id)
        raise Unavailable(f"`ray start` failed: {(done.stdout + done.stderr)[-2000:]}")
    head = {
        "started_by": "akasha up",
        "head_id": head_id,
        "address": f"127.0.0.1:{ports['port']}",
        "dashboard_url": f"http://127.0.0.1:{ports['dashboard-port']}",
        "token_from": token,
    }
    private_dir(settings.data_dir)
    write_private(settings.data_dir / MARKER, json.dumps(head))
    return head


def _gcs_fault_tolerance(settings: Settings, env: dict[str, str], head_id: str) -> list[str]:
    """With `gcs_redis_address`, the GCS keeps its tables in that Redis (Ray's GCS fault
    tolerance): a GCS restarted after a crash (with the same command line and environment)
    finds the nodes, the detached actors and Serve's state, which ran on meanwhile. Each head
    has a namespace of its own in Redis, so a new head never takes up a dead one's tables."""
    if settings.gcs_redis_address is None:
        return []
    env["RAY_REDIS_ADDRESS"] = settings.gcs_redis_address
    env["RAY_external_storage_namespace"] = f"akasha-{head_id}"
    password = settings.gcs_redis_password
    return [f"--redis-password={password.get_secret_value()}"] if password else []


def head_pids(head_id: str) -> list[int]:
    """Every process of the head `akasha up` started as `head_id` (Linux: /proc)."""
    needle = f"{HEAD_ID_ENV}={head_id}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: nothing to find, so `down` leaves the head running
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_head(head_id: str, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM every process of that head, SIGKILL what is left after `grace_s`. Returns the
    number of processes signalled."""
    pids = head_pids(head_id)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in head_pids(head_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while head_pids(head_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not head_pids(head_id):
            break
    return len(pids)


def read_marker(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads((settings.data_dir / MARKER).read_text())
    except FileNotFoundError:
        return None


def stop_if_ours(settings: Settings) -> bool:
    """Stop the head `akasha up` started for this data dir, if it did; no other Ray process."""
    head = read_marker(settings)
    if head is None:
        return False
    if "head_id" in head:
        stop_head(head["head_id"])
        if recorded_address() == head.get("address"):
            ray_internals.address_file().unlink(missing_ok=True)
    (settings.data_dir / MARKER).unlink()
    return True
