"""Which tier each memory of a batch goes to, by its age (a backfill goes straight to cold)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from akasha_ray.models import Tier
from akasha_ray.records import time_us_of
from akasha_ray.tiers import TierWindows
from akasha_ray.times import to_us


def by_tier(windows: TierWindows, batch: pa.Table, now: datetime) -> dict[Tier, pa.Table]:
    created = time_us_of(batch)
    parts: dict[Tier, pa.Table] = {}
    for tier, (lower, upper) in windows.bounds(now).items():
        keep = np.ones(len(created), dtype=bool)
        if lower is not None:
            keep &= created > to_us(lower)
        if upper is not None:
            keep &= created <= to_us(upper)
        if keep.any():
            parts[tier] = batch.filter(pa.array(keep))
    return parts
