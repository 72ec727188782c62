"""What `bench fleet` runs against: an Akasha on a Ray head of its own (`akasha up` with its own
RAY_TMPDIR, token, data dir and port, stopped by its head id, never `ray stop`), optionally with
its stores on real servers (Milvus 2.3.5, PostgreSQL 15, FalkorDB's Bolt, SeaweedFS S3) started by
the test suite's launchers (`tests/servers/`, so this needs the repository checkout; Milvus and
FalkorDB run in network namespaces, which needs root).

Each server comes with the processes a "stop" fault freezes (SIGSTOP, then SIGCONT)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from akasha_ray import local_cluster

SERVERS = ("milvus", "postgres", "bolt", "s3")
# The store each server backs, and the embedded default it replaces.
SERVER_ROLES = {
    "milvus": "warm tier (default: Milvus Lite, in the warm actor's process)",
    "postgres": "time series (default: DuckDB, in the timeseries actor's process)",
    "bolt": "graph (default: DuckDB, in the graph actor's process)",
    "s3": "cold archive (default: a local folder)",
}


@dataclass
class Server:
    name: str
    env: dict[str, str]  # AKASHA_* (and credentials) that point Akasha at it
    pids: Callable[[], list[int]]  # the processes a stop freezes, found when asked


@dataclass
class Stack:
    url: str
    admin_key: str
    head_id: str
    data_dir: Path
    env: dict[str, str]
    servers: dict[str, Server] = field(default_factory=dict)


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every process below `root`, parents first (ppid from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        below = children.get(todo.pop(0), [])
        found += below
        todo += below
    return found


def _with_children(find: Callable[[], list[int]]) -> Callable[[], list[int]]:
    def pids() -> list[int]:
        roots = find()
        return [p for root in roots for p in (root, *descendants(root))]

    return pids


def _by_cmdline(*needles: str) -> Callable[[], list[int]]:
    def find() -> list[int]:
        return [p for p in _all_pids() if all(n in _cmdline(p) for n in needles)]

    return find


def _in_netns(namespace: str, comm: str) -> Callable[[], list[int]]:
    """Processes named `comm` in that network namespace (redis-server rewrites its title, so
    its command line does not say which one it is; the namespace does)."""

    def find() -> list[int]:
        listed = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        return [int(p) for p in listed if _comm(int(p)) == comm]

    return find


@contextlib.contextmanager
def servers(names: list[str]) -> Iterator[dict[str, Server]]:
    """Start the named servers (a subset of SERVERS); yield them; stop them."""
    if not names:
        yield {}
        return
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests" / "servers").is_dir():
        raise SystemExit("--servers needs the repository checkout (tests/servers/)")
    sys.path.insert(0, str(root))
    started: dict[str, Server] = {}
    with contextlib.ExitStack() as stack:
        if "milvus" in names:
            from tests.servers.milvus_server import milvus_server

            milvus = stack.enter_context(milvus_server())
            started["milvus"] = Server(
                "milvus", {"AKASHA_WARM__URI": milvus.uri}, _with_children(lambda: [milvus.pid])
            )
        if "postgres" in names:
            from tests.servers.postgres import postgres_server

            pg = stack.enter_context(postgres_server())
            started["postgres"] = Server(
                "postgres",
                {"AKASHA_TIMESERIES__BACKEND": "timescaledb", "AKASHA_TIMESERIES__DSN": pg.dsn},
                _with_children(_by_cmdline("bin/postgres", f"port={pg.port} ")),
            )
        if "bolt" in names:
            from tests.servers.falkordb import falkordb_server

            bolt = stack.enter_context(falkordb_server())
            started["bolt"] = Server(
                "bolt",
                {"AKASHA_GRAPH__BACKEND": "neo4j", "AKASHA_GRAPH__URI": bolt.uri},
                _in_netns(bolt.namespace, "redis-server"),
            )
        if "s3" in names:
            from tests.servers import seaweedfs

            s3 = stack.enter_context(seaweedfs.seaweedfs_server(bucket="akasha-fleet"))
            port = s3.endpoint_url.rsplit(":", 1)[1]
            started["s3"] = Server(
                "s3",
                {
                    "AKASHA_OBJECTS__BACKEND": "s3",
                    "AKASHA_OBJECTS__URL": f"s3://{s3.bucket}/cold",
                    "AKASHA_OBJECTS__ENDPOINT_URL": s3.endpoint_url,
                    "AWS_ACCESS_KEY_ID": seaweedfs.ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": seaweedfs.SECRET_KEY,
                    "AWS_DEFAULT_REGION": seaweedfs.REGION,
                },
                _with_children(_by_cmdline("weed", f"-s3.port={port} ")),
            )
        for server in started.values():
            if not server.pids():
                raise RuntimeError(f"the {server.name} server's processes were not found")
        yield started


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _akasha_bin() -> str:
    return str(Path(sys.executable).with_name("akasha"))


@contextlib.contextmanager
def own_akasha(
    settings: dict[str, str], log: Callable[[str], None], keep_logs: Path | None = None
) -> Iterator[Stack]:
    """`akasha up` on a head of its own, with `settings` (AKASHA_* and the like) in its
    environment; stopped, with its files, afterwards (its Ray logs copied to `keep_logs`)."""
    # Short: Ray's socket paths live under it and must stay under the kernel's 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="akf-", dir="/tmp"))
    data_dir = ray_tmp / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
        and not k.startswith("AKASHA_")
    }
    port = _free_port()
    env |= {
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_TOKEN_PATH": str(ray_tmp / "auth_token"),
        "AKASHA_DATA_DIR": str(data_dir),
        "AKASHA_NAMESPACE": "akasha-fleet",
        "AKASHA_SERVE__PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **settings,
    }
    head_id = None
    try:
        started = subprocess.run(
            [_akasha_bin(), "up"], env=env, capture_output=True, text=True, timeout=900
        )
        marker = data_dir / local_cluster.MARKER
        if marker.exists():
            head_id = json.loads(marker.read_text())["head_id"]
        if started.returncode != 0:
            raise RuntimeError(f"akasha up failed:\n{started.stdout}\n{started.stderr}")
        # Only the serving line: `up` also prints the generated admin key.
        serving = [line for line in started.stdout.splitlines() if "is serving on" in line]
        log(serving[0] if serving else "akasha up done")
        assert head_id is not None, "akasha up started no head of its own"
        yield Stack(
            url=f"http://127.0.0.1:{port}",
            admin_key=(data_dir / "admin.key").read_text().strip(),
            head_id=head_id,
            data_dir=data_dir,
            env=env,
        )
    finally:
        subprocess.run(
            [_akasha_bin(), "down", "--force"], env=env, capture_output=True, timeout=300
        )
        if head_id is not None:
            local_cluster.stop_head(head_id)
        if keep_logs is not None:  # what an unexpected 500 or a slow recovery left behind
            for logs in ray_tmp.glob("**/session_latest/logs"):
                shutil.copytree(logs, keep_logs, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def describe(names: list[str]) -> dict[str, Any]:
    """Which store runs where in this run."""
    return {
        name: ("server" if name in names else "embedded") + f": {SERVER_ROLES[name]}"
        for name in SERVERS
    }
