"""Moving aged memories from one tier to the next: copy, verify, then delete, with a ledger.

Every batch is written to the ledger before it is touched and marked done after the source has
let go of it. Killed at any point and run again, `migrate` first finishes the batches the ledger
holds open: the copy is idempotent (stores skip ids they hold), the check is repeated, and only
then is the source deleted. A memory is therefore always in the source, the target, or briefly in
both (searches deduplicate by id), never in neither.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from akasha_ray.errors import AkashaError


class MigrationError(AkashaError):
    status_code = 500
    code = "migration"


class Source(Protocol):
    async def ids_before(self, cutoff: datetime, limit: int) -> list[str]: ...
    async def fetch(self, ids: list[str]) -> pa.Table: ...
    async def delete_many(self, ids: list[str]) -> list[str]: ...


class Target(Protocol):
    async def insert(self, batch: pa.Table) -> list[str]: ...
    async def existing(self, ids: list[str]) -> list[str]: ...


class Ledger:
    """An append-only JSON-lines file of batch starts and ends, fsynced on every line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open: dict[int, list[str]] = {}
        self._next = 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line: its batch never started
                self._next = max(self._next, entry["batch"] + 1)
                if entry["state"] == "start":
                    self._open[entry["batch"]] = entry["ids"]
                else:
                    self._open.pop(entry["batch"], None)

    def open_batches(self) -> dict[int, list[str]]:
        return dict(self._open)

    def start(self, ids: list[str]) -> int:
        batch = self._next
        self._next += 1
        self._append({"batch": batch, "state": "start", "ids": ids})
        self._open[batch] = ids
        return batch

    def finish(self, batch: int) -> None:
        self._append({"batch": batch, "state": "done"})
        del self._open[batch]
        if not self._open:  # nothing left to recover: start the file afresh
            self.path.unlink(missing_ok=True)

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())


async def move(source: Source, target: Target, ids: list[str]) -> int:
    """Copy `ids` to the target, check they are all there, then delete them from the source."""
    batch = await source.fetch(ids)
    if batch.num_rows:
        await target.insert(batch)
        wanted = batch.column("id").to_pylist()
        landed = set(await target.existing(wanted))
        missing = [i for i in wanted if i not in landed]
        if missing:
            raise MigrationError(
                f"{len(missing)} memories did not land in the target, e.g. {missing[0]}"
            )
    await source.delete_many(ids)
    return batch.num_rows


async def migrate(
    source: Source,
    target: Target,
    cutoff: datetime,
    ledger: Ledger,
    *,
    batch_size: int = 5000,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Move everything created before `cutoff` from `source` to `target`; returns counts."""
    started = time.perf_counter()
    recovered = moved = batches = 0
    for batch, ids in sorted(ledger.open_batches().items()):
        recovered += await move(source, target, ids)
        ledger.finish(batch)
    while max_batches is None or batches < max_batches:
        ids = await source.ids_before(cutoff, batch_size)
        if not ids:
            break
        batch = ledger.start(ids)
        moved += await move(source, target, ids)
        ledger.finish(batch)
        batches += 1
    seconds = time.perf_counter() - started
    total = moved + recovered
    return {
        "moved": moved,
        "recovered": recovered,
        "batches": batches,
        "seconds": round(seconds, 3),
        "per_s": round(total / seconds, 1) if seconds > 0 and total else 0.0,
    }
