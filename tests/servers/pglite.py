"""A real TimescaleDB for tests: PGlite (PostgreSQL 17 in WASM) with timescaledb 2.x, served on
the Postgres wire protocol by `pglite_server.mjs`, listening on 127.0.0.1, stopped afterwards.

It serves one client connection at a time (one shared session): use a pool of size 1. The npm
packages live in tests/servers/node_modules (`npm ci --prefix tests/servers`). Raises `ServerError`
(never skips) when it cannot start.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from akasha_ray.ports import free_port
from tests.servers.postgres import PostgresServer, ServerError

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "pglite_server.mjs"
START_TIMEOUT_S = 60


@contextmanager
def pglite_server() -> Iterator[PostgresServer]:
    node = shutil.which("node")
    if node is None:
        raise ServerError("node is missing: apt-get install -y nodejs npm")
    if not (HERE / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        raise ServerError("PGlite is not installed: npm ci --prefix tests/servers")
    port = free_port()
    process = subprocess.Popen(
        [node, str(SCRIPT), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=HERE,
    )
    try:
        _wait_ready(process)
        yield PostgresServer("127.0.0.1", port, "postgres")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    output: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # the script prints READY, or fails and closes stdout
        if not line:
            break
        output.append(line)
        if line.startswith("READY "):
            return
    process.kill()
    raise ServerError("the PGlite server did not start:\n" + "".join(output))
