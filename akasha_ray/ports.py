"""Free TCP ports on loopback, for the servers Akasha starts beside itself on one machine
(benchmarks, the DR drill's regions, the tests' servers). A port is free when asked; whoever
binds it next gets it, so a caller starts its server soon after."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct ports: all held open at once, so that none is given twice."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]
