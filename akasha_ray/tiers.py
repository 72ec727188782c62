"""Which tier a memory belongs in, and which tiers a search over a time range must ask.

Windows by age (configurable): hot < `hot_days`, warm < `warm_days`, cold beyond. A search asks
every tier that can hold part of its range (the plan's sketch looked at the end of the range only,
so a range spanning hot and warm missed one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from akasha_ray.models import Tier

TIERS: tuple[Tier, ...] = ("hot", "warm", "cold")


@dataclass(frozen=True)
class TierWindows:
    hot_days: float = 7
    warm_days: float = 90
    # After the hot window grew, warm still holds memories younger than it, up to this instant
    # (see akasha_ray.hot_window).
    warm_reaches: datetime | None = None

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

    def tiers_for(self, start: datetime | None, now: datetime, include_cold: bool) -> list[Tier]:
        """The tiers a search from `start` must ask. Hot always: it holds every age until
        migration runs, and a range it cannot match costs it a mask, not a scan. Warm and cold
        when the range reaches back into their windows: they only ever receive memories older
        than their upper bound (or `warm_reaches`), so a range that starts later cannot find
        anything there."""
        bounds = self.bounds(now)
        warm_upper = bounds["warm"][1]
        if self.warm_reaches is not None:
            warm_upper = max(warm_upper, self.warm_reaches)
        asked: list[Tier] = ["hot"]
        if start is None or start <= warm_upper:
            asked.append("warm")
        if include_cold and (start is None or start <= bounds["cold"][1]):
            asked.append("cold")
        return asked
