"""What the write paths call to log an acknowledged change (README, "Regions").

With DR off every call is a no-op. With DR on, `check` refuses a write early on a region that
is not the primary (nothing is stored), and `record` logs the change before the write is
answered; in sync mode it also waits until another region's bucket holds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import ray

from akasha_ray.actor_calls import call
from akasha_ray.config import Settings
from akasha_ray.errors import Unavailable
from akasha_ray.replication.changelog import Entry

CHANGELOG = "changelog"
STATE_TTL_S = 1.0  # how long a "this region is primary" answer is trusted by `check`


class Recorder:
    def __init__(self, settings: Settings) -> None:
        self._dr = settings.dr
        self._namespace = settings.namespace
        self._timeout = settings.serve.write_timeout_s
        self._log = None
        self._primary_until = 0.0

    @property
    def enabled(self) -> bool:
        return self._dr.enabled

    async def check(self) -> None:
        """NotPrimary (503) unless this region takes writes; trusted for STATE_TTL_S, since
        `record` checks again before anything is answered."""
        if not self.enabled or time.monotonic() < self._primary_until:
            return
        await self._call(self._changelog().writable.remote())
        self._primary_until = time.monotonic() + STATE_TTL_S

    async def log(self, entries: Sequence[Entry]) -> dict[str, int]:
        """Log `entries`: the last LSN given per stream. NotPrimary when this region may not
        take them (nothing logged)."""
        if not self.enabled or not entries:
            return {}
        return await self._call(self._changelog().append.remote(list(entries)))

    async def confirm(self, given: dict[str, int]) -> None:
        """sync mode: wait until another region's bucket holds what `log` gave (a 503 after
        dr.sync_timeout_s; the change stays logged and ships later)."""
        if self.enabled and given and self._dr.mode == "sync":
            wait = self._changelog().wait_shipped.remote(given, self._dr.sync_timeout_s)
            await self._call(wait, self._dr.sync_timeout_s + 5)

    async def record(self, entries: Sequence[Entry]) -> None:
        """`log`, then `confirm`: for a write that is already stored."""
        await self.confirm(await self.log(entries))

    def _changelog(self):
        if self._log is None:
            try:
                self._log = ray.get_actor(CHANGELOG, namespace=self._namespace)
            except ValueError as exc:
                raise Unavailable(
                    f"the change log is not running in namespace {self._namespace!r} (DR is on): "
                    "start Akasha (akasha up)"
                ) from exc
        return self._log

    async def _call(self, ref, timeout_s: float | None = None):
        try:
            return await call(ref, "the change log", timeout_s or self._timeout)
        except Unavailable:
            self._primary_until = 0.0
            raise
