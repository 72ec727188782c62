"""Which tier a memory belongs in, and which tiers a search over a time range must ask.

Windows by age (configurable): hot < `hot_days`, warm < `warm_days`, cold beyond. A search asks
every tier whose window overlaps [start, end] (the plan's sketch looked at the end of the range
only, so a range spanning hot and warm missed one). Memories wait in a tier a little past its window
until migration moves them, so a tier is also asked whenever the range overlaps what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from akasha_ray.models import Tier

TIERS: tuple[Tier, ...] = ("hot", "warm", "cold")


@dataclass(frozen=True)
class Extent:
    """The oldest and newest `created_at` a tier holds (None: it holds nothing)."""

    oldest: datetime | None = None
    newest: datetime | None = None

    def overlaps(self, start: datetime | None, end: datetime | None) -> bool:
        if self.oldest is None or self.newest is None:
            return False
        return (end is None or self.oldest <= end) and (start is None or start <= self.newest)


@dataclass(frozen=True)
class TierWindows:
    hot_days: float = 7
    warm_days: float = 90

    def bounds(self, now: datetime) -> dict[Tier, tuple[datetime | None, datetime | None]]:
        """Each tier's (lower, upper] range of `created_at` at `now` (None: unbounded): a memory
        exactly `hot_days` old has left hot."""
        hot_from = now - timedelta(days=self.hot_days)
        warm_from = now - timedelta(days=self.warm_days)
        return {"hot": (hot_from, None), "warm": (warm_from, hot_from), "cold": (None, warm_from)}

    def tier_for(self, created_at: datetime, now: datetime) -> Tier:
        """Where a memory of this age is stored, whether it arrives new or as a backfill."""
        for tier, (lower, upper) in self.bounds(now).items():
            if (lower is None or created_at > lower) and (upper is None or created_at <= upper):
                return tier
        raise AssertionError("the windows cover every instant")

    def tiers_for(
        self,
        start: datetime | None,
        end: datetime | None,
        now: datetime,
        *,
        include_cold: bool = False,
        extents: dict[Tier, Extent] | None = None,
    ) -> list[Tier]:
        """The tiers a search over [start, end] must ask, in a fixed order."""
        asked = []
        for tier, (lower, upper) in self.bounds(now).items():
            if tier == "cold" and not include_cold:
                continue
            window = (end is None or lower is None or end > lower) and (
                start is None or upper is None or start <= upper
            )
            held = extents is not None and tier in extents and extents[tier].overlaps(start, end)
            if window or held:
                asked.append(tier)
        return asked
