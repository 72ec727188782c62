"""Which consistency a warm search or read by key needs to see every acknowledged write, and no
more.

Milvus answers a search at a timestamp: Session waits until the server has applied this client's
last write to the collection, any system's (measured on the 2.3.5 server: p95 200 to 260 ms
with a write every 0.5 s, against 8 ms for Bounded). Bounded reads at the server's clock less its
`common.gracefulTime` (5 s by default): it sees every write older than that, without waiting.

So the warm owner remembers when it last wrote each system. A search waits (Session) only when a
system it may cover was written within WINDOW_S; otherwise Bounded sees everything it must. For
WINDOW_S after the owner opens, searches are Strong: a previous owner (killed) may have written
just before, and Session knows only this client's writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

# Twice Milvus's default common.gracefulTime (5 s): Bounded sees every write older than this. A
# server configured with a longer gracefulTime needs it raised.
WINDOW_S = 10.0


class RecentWrites:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._opened = clock()
        self._written: dict[str, float] = {}  # system_id -> when this owner last wrote it

    def wrote(self, system_ids: Iterable[str]) -> None:
        now = self._clock()
        for system_id in system_ids:
            self._written[system_id] = now

    def consistency(self, system_ids: Sequence[str] | None) -> str:
        """The level for a read of these systems (None: every system)."""
        now = self._clock()
        if now - self._opened < WINDOW_S:
            return "Strong"
        stale = [s for s, at in self._written.items() if now - at >= WINDOW_S]
        for system_id in stale:
            del self._written[system_id]
        if system_ids is None:
            recent = bool(self._written)
        else:
            recent = any(system_id in self._written for system_id in system_ids)
        return "Session" if recent else "Bounded"
