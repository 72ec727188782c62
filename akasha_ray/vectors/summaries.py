"""Per-system summaries of a store (count, oldest, newest) kept up to date on write, so that
`/v1/tiers` and `/v1/stats` read counters instead of scanning the store.

Each store owns one `Summaries`. An entry (a system, or ALL for the whole store) is loaded once
from the store (`load`, a scan of that system's rows only) the first time it is asked for, then
moved by every insert (`added`) and delete (`removed`). A delete that removes a system's oldest
or newest row (or one whose time the store does not know) leaves the count exact but the bounds
stale: they are loaded again on the next ask. Migration is an insert in one tier and a delete in
another, so each tier's counters follow it.

The store calls `added`/`removed` after its write committed, under its write lock, and `load`
under the same lock: a load never races a write it would then count twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from akasha_ray.times import from_us

ALL = "*"  # the entry for every system of the store (a system id never is "*": see Name)


@dataclass
class Entry:
    count: int
    oldest_us: int | None
    newest_us: int | None
    stale: bool = False  # bounds may be wrong (a delete removed an extreme)


class Summaries:
    """The entries; the owning store loads what `missing` names (with `set`) before `report`."""

    def __init__(self, complete: bool = False) -> None:
        # complete: every system is loaded (a hot shard, from its index at open), so a system
        # first seen in an insert starts at zero instead of waiting for a load.
        self._complete = complete
        self._entries: dict[str, Entry] = {}

    def added(self, system_ids: Sequence[str], times_us: Sequence[int]) -> None:
        """Rows stored (one system id and created_at per row)."""
        by_system: dict[str, list[int]] = defaultdict(list)
        for system_id, t in zip(system_ids, times_us, strict=True):
            by_system[system_id].append(t)
        for key, times in [*by_system.items(), (ALL, list(times_us))]:
            entry = self._entries.get(key)
            if entry is None and self._complete and times:
                entry = self._entries[key] = Entry(0, None, None)
            if entry is None or not times:
                continue  # not loaded yet: its load will see these rows
            entry.count += len(times)
            entry.oldest_us = (
                min(times) if entry.oldest_us is None else min(entry.oldest_us, *times)
            )
            entry.newest_us = (
                max(times) if entry.newest_us is None else max(entry.newest_us, *times)
            )

    def removed(self, system_ids: Sequence[str], times_us: Sequence[int] | None = None) -> None:
        """Rows deleted; without their times, every touched entry's bounds go stale."""
        counts = Counter(system_ids)
        counts[ALL] = len(system_ids)
        by_system: dict[str, list[int]] = defaultdict(list)
        if times_us is not None:
            for system_id, t in zip(system_ids, times_us, strict=True):
                by_system[system_id].append(t)
            by_system[ALL] = list(times_us)
        for key, n in counts.items():
            entry = self._entries.get(key)
            if entry is None or n == 0:
                continue
            entry.count = max(0, entry.count - n)
            times = by_system.get(key)
            if times is None or entry.oldest_us in times or entry.newest_us in times:
                entry.stale = True
            if entry.count == 0:
                entry.oldest_us = entry.newest_us = None
                entry.stale = False

    def forget(self) -> None:
        """Drop every entry (each is loaded again when next asked for)."""
        self._entries.clear()

    def set(self, key: str, entry: Entry) -> None:
        """An entry the store computed itself (e.g. every system at once from memory)."""
        self._entries[key] = entry

    def missing(self, system_ids: Iterable[str] | None) -> list[str]:
        """The entries `report(system_ids)` needs that are not loaded, or whose bounds are stale."""
        return [k for k in keys_for(system_ids) if (e := self._entries.get(k)) is None or e.stale]

    def counts(self) -> dict[str, int]:
        """Each loaded system's count (systems with rows only)."""
        return {k: e.count for k, e in self._entries.items() if k != ALL and e.count}

    def report(self, system_ids: Iterable[str] | None) -> dict[str, Any]:
        """count, oldest and newest over these systems (None: the whole store); every entry it
        needs must be loaded (see `missing`)."""
        return combine(self._entries[k] for k in keys_for(system_ids))


def keys_for(system_ids: Iterable[str] | None) -> list[str]:
    return [ALL] if system_ids is None else sorted(set(system_ids))


def combine(entries: Iterable[Entry]) -> dict[str, Any]:
    entries = list(entries)
    oldest = [e.oldest_us for e in entries if e.oldest_us is not None]
    newest = [e.newest_us for e in entries if e.newest_us is not None]
    return {
        "count": sum(e.count for e in entries),
        "oldest": from_us(min(oldest)) if oldest else None,
        "newest": from_us(max(newest)) if newest else None,
    }
