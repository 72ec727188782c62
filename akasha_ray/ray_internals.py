"""The Ray internals the local cluster relies on, in one place (written against Ray 2.60).

Each has a fallback for a Ray that moved it: the environment variable Ray reads at import, or a
re-implementation of what Ray documents.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

# Ray's single-machine mode. On Linux Ray turns a loopback node or GCS address into the machine's
# outward one (`services.resolve_ip_for_localhost`) unless this is "0"; then its servers bind
# 127.0.0.1 and clients keep 127.0.0.1. Read into `ray_constants` when Ray is imported.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV = "RAY_AUTH_MODE"
# Ray Serve's throughput mode (Ray >= 2.55): gRPC from the proxy to the replicas and between
# deployments instead of actor calls, user code and the router on the replica's main loop, the
# GC frozen after start. Ray 2.60 computes the proxy's own switch to gRPC before the throughput
# mode turns gRPC on, so the proxy kept actor calls (and a call back to it for each request's
# body) unless RAY_SERVE_PROXY_USE_GRPC is set too. Direct ingress (each ingress replica on a
# port of its own, behind HAProxy) stays off, so the proxy keeps Serve's one port. Every Serve
# process reads these at import: they go where the cluster's processes start (README, "Bounded
# work").
SERVE_THROUGHPUT_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_PROXY_USE_GRPC": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
}
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def serve_throughput_env(env: MutableMapping[str, str]) -> None:
    """Put SERVE_THROUGHPUT_ENV into `env`, where an operator has not set its own value."""
    for name, value in SERVE_THROUGHPUT_ENV.items():
        env.setdefault(name, value)


def address_file() -> Path:
    """Where `ray start` records the cluster address (`ray_current_cluster`), per RAY_TMPDIR."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # Ray's documented rule: RAY_TMPDIR, else TMPDIR on Linux, else /tmp
        linux_tmp = os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None
        base = os.environ.get("RAY_TMPDIR") or linux_tmp or "/tmp"
        return Path(base) / "ray" / "ray_current_cluster"
    return Path(get_ray_address_file(None))


def keep_loopback() -> None:
    """Make this process connect to a 127.0.0.1 cluster as 127.0.0.1 (see SINGLE_MACHINE_ENV)."""
    os.environ[SINGLE_MACHINE_ENV] = "0"
    try:
        from ray._private import ray_constants
    except ImportError:
        return
    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False


def token_auth_on() -> None:
    """Send Ray's token from this process (RAY_AUTH_MODE=token, as `ray.init("auto")` does)."""
    os.environ[AUTH_MODE_ENV] = "token"
    try:
        from ray._raylet import Config
    except ImportError:
        return
    Config.initialize("")  # Ray caches its config at import; re-read the mode from the env


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


def worker_setup() -> None:
    """Ray's `worker_process_setup_hook` for Akasha's job: runs first in every worker it uses."""
    from akasha_ray.private_files import restrict_umask

    restrict_umask()
    if os.environ.get(SINGLE_MACHINE_ENV) == "0":  # a head `akasha up` started: loopback only
        _serve_replica_grpc_on_loopback()


def _serve_replica_grpc_on_loopback() -> None:
    """Ray Serve 2.60 binds each replica's inter-deployment gRPC server to "[::]:0", whatever the
    node address (serve/_private/replica.py). On a single-machine head, bind it to 127.0.0.1: the
    replica module imports the helper by name when first loaded, after this hook has run."""
    try:
        from ray._common import tls_utils
    except ImportError:
        return
    original = getattr(tls_utils, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_akasha_loopback", False):
        return

    def add_port_to_grpc_server(server, address: str):
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    add_port_to_grpc_server._akasha_loopback = True  # type: ignore[attr-defined]
    tls_utils.add_port_to_grpc_server = add_port_to_grpc_server
