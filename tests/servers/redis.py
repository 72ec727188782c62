"""A real Redis (Debian's `redis-server` package) for tests, as Ray's GCS fault tolerance uses it:
its own folder and port, listening on 127.0.0.1 only, a password (`requirepass`), no snapshots
(the tests kill the GCS, not Redis: what the GCS wrote stays in Redis's memory), stopped
afterwards.

Raises `ServerError` (never skips) when it cannot start: a missing server is a failed test run.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from akasha_ray.ports import free_port

BIN = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 30.0


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str
    pid: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, *words: str) -> str:
        """One command's first reply line (inline protocol), after AUTH."""
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall(f"AUTH {self.password}\r\n{' '.join(words)}\r\n".encode())
            replies: list[str] = []
            buffer = b""
            while len(replies) < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                replies += [line.decode() for line in lines]
        if len(replies) < 2 or not replies[0].startswith("+OK"):
            raise ServerError(f"redis at {self.address}: {replies}")
        return replies[1]


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    if not Path(BIN).exists():
        raise ServerError(f"{BIN} is missing: apt-get install -y redis-server")
    folder = Path(tempfile.mkdtemp(prefix="akasha-redis-"))
    port, password = free_port(), secrets.token_hex(16)
    config = folder / "redis.conf"
    # The password is in the config file (0600), not on the command line.
    config.write_text(
        f"bind 127.0.0.1\nport {port}\nprotected-mode yes\nrequirepass {password}\n"
        f'dir {folder}\nsave ""\nappendonly no\ndaemonize no\nlogfile {folder / "redis.log"}\n'
    )
    config.chmod(0o600)
    process = subprocess.Popen(
        [BIN, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder
    )
    server = RedisServer("127.0.0.1", port, password, process.pid)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                log = (folder / "redis.log").read_text() if (folder / "redis.log").exists() else ""
                raise ServerError(f"redis-server exited ({process.returncode}): {log[-2000:]}")
            try:
                if server.command("PING") == "+PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"redis-server did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(0.1)
        yield server
    finally:
        process.kill()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
