"""A real standalone Milvus server (PyPI `milvus==2.3.5`) for tests, in its own network namespace.

`milvus-server` listens on every interface (proxy, etcd, metrics and internal ports), so it runs in
a fresh network namespace that has only loopback (`ip netns add`, `ip link set lo up`,
`ip netns exec`). A small TCP bridge, started in the namespace the same way, carries connections
in: the test process binds the bridge's listening socket on 127.0.0.1 in its own namespace and
hands it over as an inherited file descriptor, so only that loopback port is reachable. Needs root.

The wrapper stops on SIGINT (it terminates its `milvus` child); SIGTERM would leave the child
running. Its binaries (about 250 MB, unpacked from the wheel on every start) are kept in a cache
folder between sessions, which takes about 5 s off each start. `MilvusServer.outage()` freezes the
server for a while (SIGSTOP, then SIGCONT): an outage that clients see as a hung server.

Run as a script, this module is that bridge: `milvus_server.py --listen-fd N --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROXY_PORT = 19530  # inside the namespace, which is private to one server: fixed ports are safe
VERSION = "2.3.5"
SESSION_TTL_S = 120


class ServerError(RuntimeError):
    """The server could not start; tests must fail, not skip."""


@dataclass(frozen=True)
class MilvusServer:
    uri: str
    namespace: str
    log: Path
    pid: int  # the `milvus-server` wrapper; its `milvus` child does the work

    @property
    def port(self) -> int:
        return int(self.uri.rsplit(":", 1)[1])

    @contextlib.contextmanager
    def outage(self, recover_timeout_s: float = 60.0) -> Iterator[None]:
        """A hung server: SIGSTOP the wrapper and its `milvus` child. The kernel still accepts
        connections and takes requests, but nothing answers: calls without a deadline wait.
        On exit, SIGCONT; returns once a call succeeds again."""
        frozen = [self.pid, *_descendants(self.pid)]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in reversed(frozen):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + recover_timeout_s
            while not _answers(self.port):
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"Milvus did not answer within {recover_timeout_s}s after the outage; "
                        f"log:\n{_tail(self.log.parent)}"
                    )
                time.sleep(0.2)


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise ServerError(message)


def _milvus_server_bin() -> str:
    found = shutil.which("milvus-server", path=str(Path(sys.executable).parent))
    _need(found is not None, f"`milvus-server` is missing: pip install milvus=={VERSION}")
    return str(found)


def _bin_cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "akasha-tests" / f"milvus-{VERSION}-bin"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _answers(port: int) -> bool:
    """True once a gRPC call through the bridge succeeds."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=2)
    except MilvusException:
        return False
    try:
        client.get_server_version(timeout=2)
        return True
    except MilvusException:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def milvus_server(timeout_s: float = 90.0) -> Iterator[MilvusServer]:
    """Start Milvus standalone in a fresh network namespace, yield its bridged URI, stop it."""
    _need(os.geteuid() == 0, "the Milvus test server needs root (network namespaces)")
    _need(shutil.which("ip") is not None, "the `ip` command is missing: apt-get install iproute2")
    server_bin = _milvus_server_bin()
    namespace = f"akasha-milvus-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="akasha-milvus-"))
    (workdir / "bin").symlink_to(_bin_cache(), target_is_directory=True)
    log = workdir / "wrapper.log"
    processes: list[subprocess.Popen] = []
    subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
        )
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        *("ip", "netns", "exec", namespace, sys.executable, server_bin),
                        *("--data", str(workdir), "--proxy-port", str(PROXY_PORT)),
                        # Its etcd session lease (30 s by default) outlives a frozen server:
                        # with 30 s, Milvus exits on waking from a 30 s SIGSTOP (lease lost).
                        *("--extra-config", f"common.session.ttl={SESSION_TTL_S}"),
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
                        *("--listen-fd", str(listener.fileno()), "--port", str(PROXY_PORT)),
                    ],
                    pass_fds=(listener.fileno(),),
                )
            )
        deadline = time.monotonic() + timeout_s
        while not _answers(port):
            for proc in processes:
                if proc.poll() is not None:
                    raise ServerError(
                        f"{proc.args[4:6]} exited with {proc.returncode}; log:\n{_tail(workdir)}"
                    )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"Milvus did not answer within {timeout_s}s; log:\n{_tail(workdir)}"
                )
            time.sleep(0.2)
        uri = f"http://127.0.0.1:{port}"
        yield MilvusServer(uri=uri, namespace=namespace, log=log, pid=processes[0].pid)
        if processes[0].poll() is not None:  # died under the tests: say so, with its log
            raise ServerError(
                f"Milvus exited with {processes[0].returncode} during the tests; log:\n"
                + _tail(workdir)
            )
    finally:
        _stop(processes)
        subprocess.run(["ip", "netns", "delete", namespace], check=False, capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGINT the wrapper (it stops its child), then end the bridge; kill what lingers."""
    for proc, sig in zip(processes, (signal.SIGINT, signal.SIGTERM), strict=False):
        if proc.poll() is None:
            proc.send_signal(sig)
    for proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _descendants(root: int) -> list[int]:
    """Every process below `root`, parents first (from /proc/*/stat's ppid field)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [root]
    while todo:
        below = children.get(todo.pop(0), [])
        found += below
        todo += below
    return found


def _tail(workdir: Path, chars: int = 4000) -> str:
    parts = []
    for name in ("wrapper.log", "logs/milvus-stderr.log", "logs/milvus-stdout.log"):
        path = workdir / name
        if path.exists():
            parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-chars:])
    return "\n".join(parts)


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
