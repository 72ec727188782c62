"""Moving aged memories from one tier to the next: copy, verify, then delete, with a ledger.

Memories are addressed by key (`(system_id, id)`, see akasha_ray.identity). Every batch is
written to the ledger before it is touched and marked done after the source has let go of it.
Killed at any point and run again, `migrate` first finishes the batches the ledger holds open: the
copy is idempotent (stores skip keys they hold), the check is repeated, and only then is the
source deleted. A memory is therefore always in the source, the target, or briefly in both
(searches deduplicate by key), never in neither.

The check compares content hashes, not just keys: a target row under the same key with other
content is not this memory, and the source keeps it (MigrationError). The source deletes a batch
only after the target has made it durable (`make_durable`: Milvus Lite's files synced), so a
power cut cannot leave a memory in neither.

Deletes are final. A memory deleted while its batch moves must not come back in the target: the
delete path writes its tombstone and then deletes from every tier; after each copy the batch's
keys are checked against the tombstones and buried ones are deleted from the target. Either the
check sees the tombstone, or the tombstone came later and so did the delete, which finds the
target copy.

A search asks the tiers in parallel, so "never in neither" is not enough by itself: it could read
the target before the copy landed and the source after the delete. So a checked batch lingers in
both tiers for `linger_s` (the service passes its search timeout) before the source lets go: a
search slow enough to read the source after that has timed out, and says its answer is partial.

Batches are pipelined (`_Pipeline`): while the target inserts one batch it checks the one
before, and the source reads the next and deletes an earlier one; each batch still goes ledger,
copy, check, delete, ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from akasha_ray.errors import AkashaError
from akasha_ray.identity import keys_of


class MigrationError(AkashaError):
    status_code = 500
    code = "migration"


class Source(Protocol):
    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]: ...
    async def fetch(self, keys: list[str]) -> pa.Table: ...
    async def delete_many(self, keys: list[str]) -> list[str]: ...


class Target(Protocol):
    async def insert(self, batch: pa.Table) -> list[str]: ...
    async def existing(self, keys: list[str]) -> dict[str, str]: ...
    async def delete_many(self, keys: list[str]) -> list[str]: ...

    # Optional: `async def make_durable(self) -> None`, awaited before the source deletes a
    # batch; `async def flush(self) -> None`, called once when a run ends (the warm store defers
    # the flush that makes Milvus Lite's new rows fast to search until then).


class Graveyard(Protocol):
    async def buried(self, keys: list[str]) -> list[str]: ...


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
                    self._open[entry["batch"]] = entry["keys"]
                else:
                    self._open.pop(entry["batch"], None)

    def open_batches(self) -> dict[int, list[str]]:
        return dict(self._open)

    def start(self, keys: list[str]) -> int:
        batch = self._next
        self._next += 1
        self._append({"batch": batch, "state": "start", "keys": keys})
        self._open[batch] = keys
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


async def copy_checked(
    source: Source, target: Target, keys: list[str], graveyard: Graveyard | None
) -> int:
    """Copy `keys` to the target and check they are all there, as they are in the source, and
    not deleted meanwhile; returns how many the source held."""
    batch = await source.fetch(keys)
    if batch.num_rows:
        await target.insert(batch)
        await check_landed(target, batch, graveyard)
        await drop_buried(target, keys_of(batch), graveyard)
    return batch.num_rows


async def check_landed(target: Target, batch: pa.Table, graveyard: Graveyard | None = None) -> None:
    """Raise MigrationError unless the target holds every row of `batch` with its content, but
    for memories deleted since the batch was read (a DELETE may have taken the new copy)."""
    keys = keys_of(batch)
    landed = await target.existing(keys)
    hashes = batch.column("content_hash").to_pylist()
    missing = [k for k, h in zip(keys, hashes, strict=True) if landed.get(k) != h]
    if missing and graveyard is not None:
        buried = set(await graveyard.buried(missing))
        missing = [k for k in missing if k not in buried]
    if missing:
        raise MigrationError(
            f"{len(missing)} memories did not land in the target as they are in the source, "
            f"e.g. {missing[0]}"
        )


async def drop_buried(target: Target, keys: list[str], graveyard: Graveyard | None) -> None:
    """Delete from the target the keys deleted (for good) since the batch was read."""
    if graveyard is None or not keys:
        return
    buried = await graveyard.buried(keys)
    if buried:
        await target.delete_many(buried)


async def make_durable(target: Target) -> None:
    durable = getattr(target, "make_durable", None)
    if durable is not None:
        await durable()


async def migrate(
    source: Source,
    target: Target,
    cutoff: datetime,
    ledger: Ledger,
    *,
    batch_size: int = 5000,
    max_batches: int | None = None,
    linger_s: float = 0.0,
    graveyard: Graveyard | None = None,
) -> dict[str, Any]:
    """Move everything created before `cutoff` from `source` to `target`; returns counts."""
    started = time.perf_counter()
    recovered = 0
    unfinished = sorted(ledger.open_batches().items())
    for _, keys in unfinished:
        recovered += await copy_checked(source, target, keys, graveyard)
    if unfinished:
        await make_durable(target)
        await asyncio.sleep(linger_s)
    for number, keys in unfinished:
        await source.delete_many(keys)
        ledger.finish(number)
    pipeline = _Pipeline(source, target, cutoff, ledger, batch_size, linger_s, graveyard)
    await pipeline.run(max_batches)
    moved, batches = pipeline.moved, pipeline.batches
    flush = getattr(target, "flush", None)
    if flush is not None and (moved or recovered):
        await flush()
    seconds = time.perf_counter() - started
    total = moved + recovered
    return {
        "moved": moved,
        "recovered": recovered,
        "batches": batches,
        "seconds": round(seconds, 3),
        "per_s": round(total / seconds, 1) if seconds > 0 and total else 0.0,
    }


@dataclass
class _Batch:
    number: int  # in the ledger
    keys: list[str]  # as listed (and written to the ledger)
    rows: pa.Table | None  # as fetched: the keys the source still held (dropped once checked)
    count: int  # rows fetched
    checked_at: float = 0.0  # time.monotonic() once the target held them all


class _Pipeline:
    """Batches go through four stages at once, each batch in its own: list and fetch (source),
    insert (target), check (target), delete (source). While the target inserts batch n, it
    answers the check of n - 1, and the source reads n + 1 and deletes n - 2: the stores work side
    by side instead of waiting on each other's round trips.

    Each batch keeps its order (ledger start, copy, check, linger, delete, ledger end), so a crash
    leaves only started batches open, and the next run finishes them; more than one can be open
    (each one in both tiers, or in the source alone).
    """

    def __init__(
        self,
        source: Source,
        target: Target,
        cutoff: datetime,
        ledger: Ledger,
        batch_size: int,
        linger_s: float,
        graveyard: Graveyard | None,
    ) -> None:
        self.source, self.target, self.cutoff = source, target, cutoff
        self.ledger, self.batch_size, self.linger_s = ledger, batch_size, linger_s
        self.graveyard = graveyard
        self.moved = self.batches = 0
        self._in_flight: set[str] = set()  # keys listed but not yet deleted
        self._deleted = asyncio.Event()  # set each time a batch leaves the pipeline

    async def run(self, max_batches: int | None) -> None:
        steps = [self._insert, self._check, self._delete]
        # Checked batches wait out their linger in an unbounded queue (keys only), so copying
        # goes on meanwhile.
        queues: list[asyncio.Queue] = [asyncio.Queue(maxsize=1), asyncio.Queue(1), asyncio.Queue()]
        stages = [asyncio.create_task(self._fetch(queues[0], max_batches))]
        for step, inbox, out in zip(steps, queues, [*queues[1:], None], strict=True):
            stages.append(asyncio.create_task(self._stage(step, inbox, out)))
        try:
            await asyncio.gather(*stages)
        except BaseException:
            for stage in stages:
                stage.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            raise

    @staticmethod
    async def _stage(
        step: Callable[[_Batch], Awaitable[None]],
        inbox: asyncio.Queue,
        out: asyncio.Queue | None,
    ) -> None:
        while (batch := await inbox.get()) is not None:
            await step(batch)
            if out is not None:
                await out.put(batch)
        if out is not None:
            await out.put(None)

    async def _fetch(self, out: asyncio.Queue, max_batches: int | None) -> None:
        listed = 0
        while max_batches is None or listed < max_batches:
            keys = await self._next_keys()
            if not keys:
                break
            number = self.ledger.start(keys)
            self._in_flight.update(keys)
            rows = await self.source.fetch(keys)
            await out.put(_Batch(number, keys, rows, rows.num_rows))
            listed += 1
        await out.put(None)

    async def _next_keys(self) -> list[str]:
        """The next batch of keys before the cutoff that no earlier batch holds; [] when none is
        left. The source still lists keys of batches in flight, so ask for that many more; if it
        gave only those (a source may cap its answer), wait for a batch to leave and ask again."""
        while True:
            self._deleted.clear()
            held = len(self._in_flight)
            listed = await self.source.keys_before(self.cutoff, self.batch_size + held)
            fresh = [i for i in listed if i not in self._in_flight]
            if fresh or not self._in_flight:
                return fresh[: self.batch_size]
            await self._deleted.wait()

    async def _insert(self, batch: _Batch) -> None:
        if batch.count:
            await self.target.insert(batch.rows)

    async def _check(self, batch: _Batch) -> None:
        if batch.count:
            await check_landed(self.target, batch.rows, self.graveyard)
            await drop_buried(self.target, keys_of(batch.rows), self.graveyard)
        batch.rows, batch.checked_at = None, time.monotonic()

    async def _delete(self, batch: _Batch) -> None:
        await asyncio.sleep(batch.checked_at + self.linger_s - time.monotonic())
        await make_durable(self.target)  # usually one sync covers several batches
        await self.source.delete_many(batch.keys)
        self.ledger.finish(batch.number)
        self._in_flight.difference_update(batch.keys)
        self.moved += batch.count
        self.batches += 1
        self._deleted.set()
