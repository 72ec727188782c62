"""The `timeseries` actor: sole owner of the time-series store (a DuckDB file, or an asyncpg pool)
and of the write batcher in front of it; it also runs the rollups' refresh policy on schedule.

`write()` returns once the points are in the journal on disk (fsynced; `PointJournal`) and
buffered (the API answers 202). They reach the store within `flush_interval_s`, or sooner when
`flush_max_points` wait; `flush()` waits for that. A query answers with the buffered points too
(read-your-writes). `shutdown()` is the clean stop: it flushes everything accepted, then closes
the store.

When the store fails (any error: down, refusing, disk full, read-only after a failover), the
batcher keeps the points and retries with backoff; `health()` says "failing", why, since when, and
how many points wait. While the store is failing they pile up to `max_pending_points`, after which
`write()` answers 503 rather than accept more; so does a journal that cannot be written. A crash
(the process dies, or `ray.kill`) loses nothing acknowledged: the restarted actor reads the
journal (`journal_dir`, by default `<data_dir>/metrics-journal/` on the node it runs on) and sends
the store what it may lack, the range that was in flight under its token, so nothing is stored
twice. Ray does not retry a `write` after a restart (the supervisor sets no task retries): its
caller got an error and cannot know whether the points were kept.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from akasha_ray.config import Settings, from_dict
from akasha_ray.errors import Unavailable
from akasha_ray.timeseries import (
    Bucket,
    MetricsQuery,
    PointBatch,
    TimeseriesOptions,
    TimeseriesStore,
    open_timeseries_store,
)
from akasha_ray.timeseries.batcher import WriteBatcher, describe_error
from akasha_ray.timeseries.journal import PointJournal
from akasha_ray.timeseries.pending import merge_pending

ACTOR_NAME = "timeseries"
JOURNAL_DIR = "metrics-journal"
# /healthz waits 5 s for the whole answer: a store that does not answer is reported, not awaited.
_STORE_HEALTH_TIMEOUT_S = 3.0


class TimeseriesActor:
    # An async actor: calls interleave on one event loop, the store's own locking orders them.
    def __init__(self, settings: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        self._settings: Settings = from_dict(settings)
        self._options = TimeseriesOptions.model_validate(options or {})
        self._store: TimeseriesStore | None = None
        self._batcher: WriteBatcher | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._refresher_restarts = 0
        self._started = asyncio.Lock()
        self._stopping = False  # shutdown() runs: no new store, no refresh loop
        self._last_refresh: dict[str, Any] | None = None
        self._last_refresh_error: str | None = None
        self._refresh_failing_since: datetime | None = None

    async def _ready(self) -> tuple[TimeseriesStore, WriteBatcher]:
        # Opened on first use, not in __init__: opening connects and may take seconds.
        async with self._started:
            if self._stopping:
                raise Unavailable("the metrics writer is shutting down")
            if self._store is None:
                store = await open_timeseries_store(
                    self._settings.timeseries, self._settings.data_dir, self._options
                )
                journal = PointJournal(
                    self._options.journal_dir or self._settings.data_dir / JOURNAL_DIR
                )
                try:
                    recovered = await asyncio.to_thread(journal.recover)
                except OSError as exc:  # unreadable: say so (503), never guess what it held
                    await store.close()
                    raise Unavailable(f"the metrics journal cannot be read: {exc}") from exc
                batcher = WriteBatcher(
                    store.write,
                    max_points=self._options.flush_max_points,
                    max_delay_s=self._options.flush_interval_s,
                    max_pending=self._options.max_pending_points,
                    close_timeout_s=self._options.shutdown_timeout_s,
                    journal=journal,
                )
                batcher.restore(recovered)
                batcher.start()
                self._store, self._batcher = store, batcher
        assert self._batcher is not None
        self._supervise_refresher()
        return self._store, self._batcher

    async def write(self, batch: PointBatch) -> int:
        _, batcher = await self._ready()
        return await batcher.add(batch)

    async def write_once(self, batch: PointBatch, token: str) -> int:
        """Store points now (committed on return), once per `token` for as long as the store
        keeps tokens (`WRITE_TOKENS_KEPT`): replicated, restored and imported batches, which
        may be applied again."""
        store, _ = await self._ready()
        return await store.write(batch, token)

    async def flush(self) -> None:
        _, batcher = await self._ready()
        await batcher.flush()

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        store, batcher = await self._ready()
        answer, pending = await batcher.read_with_pending(lambda: store.query(query))
        return merge_pending(answer, pending, query)

    async def export(self, offset: int, limit: int, system_id: str | None = None) -> PointBatch:
        """Raw points in a fixed order (see the store's `export`), after flushing the buffer."""
        store, batcher = await self._ready()
        if not hasattr(store, "export"):
            raise Unavailable("this metrics store cannot be snapshotted yet")
        if offset == 0:
            await batcher.flush()
        return await store.export(offset, limit, system_id)

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        store, batcher = await self._ready()
        await batcher.flush()  # what was accepted before the refresh is materialized by it
        self._last_refresh = await store.refresh(now)
        return self._last_refresh

    async def health(self) -> dict[str, Any]:
        """The store's report, the writer's and the refresh loop's; `status` is "failing" while
        either fails, with `error` and `failing_since` saying why and since when."""
        store, batcher = await self._ready()
        writer = batcher.stats()
        try:
            report = await asyncio.wait_for(store.health(), _STORE_HEALTH_TIMEOUT_S)
            store_error = None
        except Exception as exc:  # noqa: BLE001 - the store cannot report: that is the report
            report, store_error = {}, describe_error(exc)
        failures = []  # (error, since), the writer's first: it is what loses points
        if writer["status"] == "failing":
            failures.append((writer["last_error"], writer["failing_since"]))
        if self._last_refresh_error is not None:
            failures.append((self._last_refresh_error, _iso(self._refresh_failing_since)))
        if store_error is not None:
            failures.append((store_error, None))
        first = failures[0] if failures else None
        return {
            **report,
            "status": "ok" if first is None else "failing",
            "error": None if first is None else first[0],
            "failing_since": None if first is None else first[1],
            "pending_points": writer["pending"],
            "writer": writer,
            "last_refresh": self._last_refresh,
            "last_refresh_error": self._last_refresh_error,
            "refresh_failing_since": _iso(self._refresh_failing_since),
            "refresher_restarts": self._refresher_restarts,
        }

    async def shutdown(self) -> dict[str, Any]:
        """Flush everything accepted and close the store; the actor can then be killed.

        If the store still fails after the batcher's close timeout, this raises `Unavailable` and
        the actor goes on as before (points kept, retried), rather than drop what it holds."""
        if self._store is None or self._batcher is None:
            return {"flushed": 0}
        store, batcher = self._store, self._batcher
        self._stopping = True
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
        try:
            await batcher.aclose()
        except BaseException:
            self._stopping = False
            self._supervise_refresher()
            raise
        try:
            await store.close()
        finally:
            batcher.close_journal()
            self._store, self._batcher = None, None
            self._stopping = False  # a later call opens the store again
        return batcher.stats()

    # -- the refresh loop -----------------------------------------------------------------------

    def _supervise_refresher(self) -> None:
        """Start the refresh loop, or start it again if it died."""
        if self._store is None or self._stopping:
            return
        if self._refresher is not None and not self._refresher.done():
            return
        if self._refresher is not None:
            self._refresher_restarts += 1
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name="ts-refresh"
        )
        self._refresher.add_done_callback(self._on_refresher_done)

    def _on_refresher_done(self, task: asyncio.Task[None]) -> None:
        if task is self._refresher and not task.cancelled() and task.exception() is not None:
            self._record_refresh_error(task.exception())
            self._supervise_refresher()

    async def _refresh_loop(self) -> None:
        interval = self._options.refresh_every.total_seconds()
        while True:
            await asyncio.sleep(interval)
            store = self._store
            if store is None or self._stopping:
                return
            try:
                self._last_refresh = await store.refresh()
            except Exception as exc:  # noqa: BLE001 - any store failure: in health, tried again
                self._record_refresh_error(exc)
                continue
            self._last_refresh_error = None
            self._refresh_failing_since = None

    def _record_refresh_error(self, exc: BaseException) -> None:
        self._last_refresh_error = describe_error(exc)
        if self._refresh_failing_since is None:
            self._refresh_failing_since = datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
