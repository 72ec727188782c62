"""A TCP proxy on 127.0.0.1 in front of a real server, whose link a test can break.

Modes: "up" forwards; "refuse" (`down()`) cuts the open connections and closes each new one at
once (a link that is down);
"lose_replies" forwards requests but drops what the server answers and closes the connection
(the request landed, its reply was lost in transit), for the next `lose_count` connections
that get an answer, then goes back to "up".
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class FlakyProxy:
    upstream: tuple[str, int]
    mode: str = "up"
    lose_count: int = 0
    url: str = ""
    lost: int = 0
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: set[socket.socket] = field(default_factory=set)

    def down(self) -> None:
        with self._lock:
            self.mode = "refuse"
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        with self._lock:
            self.mode = "up"

    def lose_replies(self, count: int) -> None:
        with self._lock:
            self.mode, self.lose_count = "lose_replies", count

    def _take_loss(self) -> bool:
        with self._lock:
            if self.mode != "lose_replies" or self.lose_count <= 0:
                return False
            self.lose_count -= 1
            self.lost += 1
            if self.lose_count == 0:
                self.mode = "up"
            return True

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            if self.mode == "refuse":
                self.refused += 1
                client.close()
                continue
            threading.Thread(target=self._link, args=(client,), daemon=True).start()

    def _link(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.add(client)
        threading.Thread(target=_pump, args=(client, server), daemon=True).start()
        try:
            while data := server.recv(65536):
                # An interim "100 Continue" comes before the request body is even sent: losing
                # it loses the request, not its reply.
                if not data.startswith(b"HTTP/1.1 100") and self._take_loss():
                    break  # the server's answer never reaches the client
                client.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def flaky_proxy(upstream_url: str) -> Iterator[FlakyProxy]:
    """Proxy `http://host:port`; yields the proxy (its `url` is what clients use)."""
    host, port = upstream_url.removeprefix("http://").rstrip("/").split(":")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    proxy = FlakyProxy(upstream=(host, int(port)))
    proxy.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    thread = threading.Thread(target=proxy.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
        listener.close()
        thread.join(timeout=5)
