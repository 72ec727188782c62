"""A real PostgreSQL 15 (Debian's `postgresql` package) for tests: its own data folder, port and
socket folder, listening on 127.0.0.1 only, run as the `postgres` user, stopped afterwards.

Raises `ServerError` (never skips) when it cannot start: a missing server is a failed test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from akasha_ray.ports import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres?sslmode=disable"


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return args if os.geteuid() != 0 else ["runuser", "-u", USER, "--", *args]


def _run(args: list[str], folder: Path) -> None:
    result = subprocess.run(_as_postgres(args), capture_output=True, text=True, cwd=folder)
    if result.returncode != 0:
        raise ServerError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    if not (BIN / "postgres").exists():
        raise ServerError(f"{BIN}/postgres is missing: apt-get install -y postgresql")
    folder = Path(tempfile.mkdtemp(prefix="akasha-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, USER)
        shutil.chown(sockets, USER)
    port = free_port()
    try:
        _run(
            [str(BIN / "initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8"], folder
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = folder / "server.log"
        _run(
            [str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"],
            folder,
        )
        try:
            yield PostgresServer("127.0.0.1", port, USER)
        finally:
            _run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
