"""The hot window adapts to hot search latency.

The rule, applied by the migrator before each pass:

- Every hot shard times its last 256 searches, whole and their index scan alone. A shard with at
  least 20 of them reports both p95s and its row count; a shard with fewer has no say.
- A shard whose p95 exceeds `tiers.hot_target_p95_ms` is over its budget. Only the scan grows
  with the rows (about in proportion: the index is an exact scan); the rest (reading the hits,
  the call) does not. So its budget is `rows * (0.9 * target - rest) / scan` rows, where
  rest = p95 - scan p95 and 0.9 leaves headroom. When the rest alone uses up the target, fewer
  rows cannot help and the window stays. The window shrinks to the age that leaves every shard at
  most its budget (the age of its newest row beyond the budget), never below `tiers.hot_min_days`.
- When every shard with a say answers within half the target, the window doubles, up to
  `tiers.hot_days`. The gap between the two thresholds keeps it from flapping.
- The migrator then moves what the new window leaves out of hot, as always.

Changing the window must not make a search miss a memory, although readers (the ingress, the ingest
jobs) cache the window for up to `READ_TTL_S`:
- after a shrink the migrator waits `settle_s` (the cache lifetime plus the longest search) before
  moving anything by the new window, so no search planned with the old one is still running;
- after a growth the warm tier still holds memories younger than the new window (those moved by the
  old one): `warm_reaches` remembers the newest of them, and a search starting before it asks warm.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from akasha_ray.tiers import TierWindows

READ_TTL_S = 5.0  # how long a reader may keep using a window it was told
MIN_SEARCHES = 20  # searches a shard must have timed before its p95 counts
HEADROOM = 0.9


@dataclass(frozen=True)
class ShardLoad:
    rows: int
    searches: int
    p95_ms: float | None
    scan_p95_ms: float | None


@dataclass(frozen=True)
class HotWindow:
    days: float
    max_days: float  # tiers.hot_days when this was decided
    changed_at: datetime | None = None
    warm_reaches: datetime | None = None  # newest created_at warm may hold beyond now - days
    reason: str = "configured"

    def tier_windows(self, warm_days: float) -> TierWindows:
        return TierWindows(self.days, warm_days, self.warm_reaches)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("changed_at", "warm_reaches"):
            data[name] = data[name].isoformat() if data[name] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HotWindow:
        moments = {
            name: datetime.fromisoformat(data[name]) if data.get(name) else None
            for name in ("changed_at", "warm_reaches")
        }
        return cls(
            days=float(data["days"]),
            max_days=float(data["max_days"]),
            reason=data.get("reason", ""),
            **moments,
        )


def resized(
    window: HotWindow, days: float, now: datetime, settle_s: float, reason: str
) -> HotWindow:
    """The window changed to `days` at `now`. A growth remembers how far back warm reaches: what
    warm received under the old window, which readers may use for `settle_s` more, is older than
    `now + settle_s - old days`."""
    reaches = window.warm_reaches
    if days > window.days:
        grown_from = now + timedelta(seconds=settle_s) - timedelta(days=window.days)
        reaches = grown_from if reaches is None else max(reaches, grown_from)
    return replace(window, days=days, changed_at=now, warm_reaches=reaches, reason=reason)


def reconciled(window: HotWindow, configured_days: float, now: datetime, settle_s: float):
    """The window after `tiers.hot_days` changed from `window.max_days` to `configured_days`: an
    unadapted window follows the setting; an adapted one stays, within the new maximum."""
    if configured_days == window.max_days:
        return window
    adapted = window.days < window.max_days
    days = min(window.days, configured_days) if adapted else configured_days
    if days != window.days:
        window = resized(window, days, now, settle_s, "configured")
    return replace(window, max_days=configured_days)


def budget(load: ShardLoad, target_ms: float) -> int | None:
    """Rows this shard may hold to answer within the target; None when it already does, when it
    has too few searches to judge, or when fewer rows would not help."""
    if load.p95_ms is None or load.searches < MIN_SEARCHES or load.p95_ms <= target_ms:
        return None
    scan = max(load.scan_p95_ms or 0.0, 1e-6)
    rest = max(0.0, load.p95_ms - scan)
    if rest >= target_ms * HEADROOM:
        return None
    return math.floor(load.rows * (target_ms * HEADROOM - rest) / scan)


def all_fast(loads: list[ShardLoad], target_ms: float) -> bool:
    judged = [x for x in loads if x.p95_ms is not None and x.searches >= MIN_SEARCHES]
    return bool(judged) and all(x.p95_ms < target_ms / 2 for x in judged)


def shrunk(
    window: HotWindow, cutoffs: list[datetime | None], now: datetime, min_days: float
) -> float | None:
    """The window that leaves each over-budget shard within its budget. `cutoffs` holds, per such
    shard, the created_at of its newest row beyond the budget (None: it holds fewer rows)."""
    binding = [c for c in cutoffs if c is not None]
    if not binding:
        return None
    days = max(min_days, (now - max(binding)) / timedelta(days=1))
    return days if days < window.days else None


def grown(window: HotWindow) -> float | None:
    return min(window.max_days, window.days * 2) if window.days < window.max_days else None


class WindowFile:
    """The window in force, kept in `<data_dir>/tiers/hot_window.json` (written atomically)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "tiers" / "hot_window.json"

    def read(self, configured_days: float) -> HotWindow:
        if not self.path.exists():
            return HotWindow(days=configured_days, max_days=configured_days)
        return HotWindow.from_json(json.loads(self.path.read_text()))

    def write(self, window: HotWindow) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        with open(scratch, "w") as out:
            json.dump(window.to_json(), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, self.path)
