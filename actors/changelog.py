"""The `changelog` actor: owner of the region's change log, and its write gate.

Every write path asks it to log a change before answering; it refuses (NotPrimary, a 503 naming
the primary) unless this region is the primary at the epoch it last learnt. The `region-<name>`
coordinators long-poll it for new changes, tell it how far they shipped, and tell it when the
witness names another primary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from akasha_ray.config import Settings, from_dict
from akasha_ray.errors import NotPrimary, Unavailable
from akasha_ray.replication.changelog import ChangeLog, Entry

ACTOR_NAME = "changelog"
SHIPPED, APPLIED = "shipped", "applied"
COMPACT_EVERY_S = 60.0  # how often changes every other region holds are dropped here


class ChangelogActor:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings: Settings = from_dict(settings)
        dr = self._settings.dr
        self._region = dr.region
        self._log = ChangeLog(self._settings.data_dir / "dr" / "changelog.duckdb")
        configured = next((r.name for r in dr.regions if r.role == "primary"), self._region)
        self._epoch, self._primary = self._log.region_state() or (1, configured)
        self._changed = asyncio.Condition()  # notified on every append and every mark
        self._others = [r.name for r in dr.regions if r.name != self._region]
        self._compacted_at = time.monotonic()

    # -- the write gate and the log -----------------------------------------------------------

    async def append(self, entries: list[Entry]) -> dict[str, int]:
        """Log changes under this region's epoch; NotPrimary unless this region is primary."""
        self._require_primary()
        given = self._log.append(entries, self._epoch)
        async with self._changed:
            self._changed.notify_all()
        return given

    def writable(self) -> bool:
        """Cheap pre-check for write paths (append decides)."""
        self._require_primary()
        return True

    async def wait_new(self, after: Mapping[str, int], timeout_s: float) -> bool:
        """Long poll: True as soon as changes beyond `after` exist, False after `timeout_s`."""

        def beyond() -> bool:
            return any(n > after.get(s, 0) for s, n in self._log.last().items())

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(beyond), timeout_s)
            except TimeoutError:
                return False
        return True

    def read(self, after: Mapping[str, int], limit: int) -> pa.Table:
        return self._log.read(after, limit)

    def last(self) -> dict[str, int]:
        return self._log.last()

    def pending(self, after: Mapping[str, int]) -> tuple[int, Any]:
        return self._log.pending(after)

    def compact(self, through: Mapping[str, int]) -> int:
        return self._log.compact(through)

    # -- how far others got -------------------------------------------------------------------

    async def mark_shipped(self, region: str, versions: Mapping[str, int]) -> None:
        self._log.mark(SHIPPED, region, versions)
        async with self._changed:
            self._changed.notify_all()
        if time.monotonic() - self._compacted_at > COMPACT_EVERY_S:
            self.compact_shipped()

    def compact_shipped(self) -> int:
        """Drop the changes every other region's bucket holds; how many were dropped."""
        self._compacted_at = time.monotonic()
        return self._log.compact(self.shipped_everywhere())

    def shipped_everywhere(self) -> dict[str, int]:
        """Per stream, the LSN every other region's bucket holds: what this log may drop (a
        region that is down holds the log back until it catches up)."""
        marks = self._log.marks(SHIPPED)
        if not self._others or any(r not in marks for r in self._others):
            return {}
        streams = set.intersection(*(set(marks[r]) for r in self._others))
        return {s: min(marks[r][s] for r in self._others) for s in streams}

    def shipped(self) -> dict[str, dict[str, int]]:
        return self._log.marks(SHIPPED)

    async def wait_shipped(self, versions: Mapping[str, int], timeout_s: float) -> None:
        """sync mode: return once another region's bucket holds `versions` (a promotion reads
        every reachable bucket, so one copy outside this region is enough); Unavailable after
        `timeout_s`."""

        def held() -> bool:
            return any(
                all(marks.get(s, 0) >= n for s, n in versions.items())
                for marks in self._log.marks(SHIPPED).values()
            )

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(held), timeout_s)
            except TimeoutError as exc:
                raise Unavailable(
                    f"no other region confirmed the write within {timeout_s} s (dr.mode sync); "
                    "it is stored here and will ship when a region answers"
                ) from exc

    def mark_applied(self, source: str, versions: Mapping[str, int]) -> None:
        self._log.mark(APPLIED, source, versions)

    def applied(self, source: str) -> dict[str, int]:
        return self._log.marks(APPLIED).get(source, {})

    # -- the region's epoch -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "region": self._region,
            "epoch": self._epoch,
            "primary": self._primary,
            "fenced": self._primary != self._region,
        }

    async def set_state(self, epoch: int, primary: str) -> dict[str, Any]:
        """What the witness says (a promotion, or another region promoted): from now on only
        `primary` takes writes. An older epoch than the one known is ignored."""
        if epoch >= self._epoch:
            self._epoch, self._primary = epoch, primary
            self._log.set_region_state(epoch, primary)
            async with self._changed:
                self._changed.notify_all()
        return self.state()

    def _require_primary(self) -> None:
        if self._primary != self._region:
            regions = {r.name: r for r in self._settings.dr.regions}
            url = regions[self._primary].url if self._primary in regions else None
            where = f" at {url}" if url else ""
            raise NotPrimary(
                f"region {self._region} does not take writes (epoch {self._epoch}); "
                f"the primary is {self._primary}{where}",
                primary=self._primary,
                primary_url=url,
            )
