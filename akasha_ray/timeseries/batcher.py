"""The write batcher: gathers accepted points and hands them to the store in large batches.

A batch is flushed when `max_points` wait, or when the oldest waiting point is `max_delay_s` old,
whichever comes first. `add()` returns once the points are buffered (the API answers 202); a clean
`aclose()` flushes everything buffered.

Any exception from the store (a refusal, a lost connection, a full disk, a read-only server after a
failover) leaves the points buffered: they are sent again after an exponential backoff with jitter
(`retry_delay_s` doubling up to `max_retry_delay_s`), and `stats()` says since when it fails and
why. Points leave the buffer only once the store has returned from writing them, so none is lost.
A batch whose write failed is sent again as it was, with the same token (see `TimeseriesStore`),
so a write that failed after its commit (a connection lost during COMMIT) is not stored twice.
The loop that flushes is supervised: an exception in the loop itself is recorded and the loop
starts again; a task that died is started again.

What a crash can lose: with a journal (`PointJournal`, the default in the actor), nothing: `add()`
returns once the points are on disk, and `restore()` puts back, after a restart, what the store
may lack. Without one, the points accepted since the last successful flush (normally at most
`max_delay_s` worth). While the store fails, points pile up to `max_pending`, after which `add()`
refuses new points with `Unavailable` (503) instead of growing without bound.

Read-your-writes: `read_with_pending()` runs a read of the store together with a copy of the points
still buffered, taken so that no point is in both or in neither (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from akasha_ray.errors import AkashaError, Unavailable
from akasha_ray.timeseries.batch import PointBatch
from akasha_ray.timeseries.journal import PointJournal, Recovered

Sink = Callable[[PointBatch, str], Awaitable[int]]  # (points, the write's token)
T = TypeVar("T")

_OPTIMISTIC_READS = 4
_MAX_ERROR_CHARS = 300
# user:password@ in a URL, and key=value secrets in a libpq-style string.
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)
_KEY_VALUE_SECRET = re.compile(r"\b(password|passwd|secret|token)\s*=\s*\S+", re.IGNORECASE)


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of an error, for health reports."""
    text = exc.message if isinstance(exc, AkashaError) else f"{type(exc).__name__}: {exc}"
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _KEY_VALUE_SECRET.sub(r"\1=***", text)
    text = " ".join(text.split())  # one line
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


class WriteBatcher:
    def __init__(
        self,
        sink: Sink,
        *,
        max_points: int = 10_000,
        max_delay_s: float = 1.0,
        max_pending: int = 1_000_000,
        retry_delay_s: float = 0.5,
        max_retry_delay_s: float = 30.0,
        close_timeout_s: float = 10.0,
        journal: PointJournal | None = None,
    ) -> None:
        self._sink = sink
        self._journal = journal
        self._max_points = max_points
        self._max_delay_s = max_delay_s
        self._max_pending = max_pending
        self._retry_delay_s = retry_delay_s
        self._max_retry_delay_s = max(max_retry_delay_s, retry_delay_s)
        self._close_timeout_s = close_timeout_s
        # (monotonic arrival, points, journal seq or 0)
        self._buffer: list[tuple[float, PointBatch, int]] = []
        self._buffered = 0
        self._retrying: tuple[int, str] | None = None  # (buffer entries, token) of a failed write
        self._wake = asyncio.Event()  # new points, or a flush/close request
        self._retry_now = asyncio.Event()  # cut a backoff short (flush(), aclose())
        self._round_done = asyncio.Event()
        self._rounds_started = 0  # flush rounds begun, and the number of the last one ended
        self._rounds_ended = 0
        self._flush_requested = False
        self._closing = False
        self._close_deadline = 0.0
        self._task: asyncio.Task[None] | None = None
        self._sink_lock = asyncio.Lock()  # held while the sink runs
        self._sink_calls = 0  # +1 when a sink call starts and +1 when it ends: odd while one runs
        self._flushed = 0
        self._failures = 0
        self._consecutive_failures = 0
        self._failing_since: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._loop_crashes = 0
        self._restarts = 0

    def start(self) -> None:
        """Start the flusher; call from the event loop that will run it. Restarts a dead one."""
        if self._task is not None and not self._task.done():
            return
        if self._task is not None:
            self._restarts += 1
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="ts-flusher")
        self._task.add_done_callback(self._on_task_done)

    async def add(self, batch: PointBatch) -> int:
        """Buffer points for the next flush; returns how many were accepted."""
        if self._closing:
            raise Unavailable("the metrics writer is shutting down")
        if self._task is None:
            raise RuntimeError("WriteBatcher.start() was not called")
        self._ensure_running()
        if self._buffered + len(batch) > self._max_pending:
            raise Unavailable(
                f"{self._buffered} metric points wait for the store "
                f"(at most {self._max_pending} may wait){self._failure_note()}; retry later"
            )
        if not len(batch):
            return 0
        seq, mark = 0, None
        if self._journal is not None:
            try:
                seq, mark = self._journal.append(batch)
            except OSError as exc:
                raise Unavailable(f"the metrics journal cannot be written: {exc}") from exc
        # Buffered in the journal's order, before any await: a flush takes a prefix of both.
        entry = (time.monotonic(), batch, seq)
        self._buffer.append(entry)
        self._buffered += len(batch)
        if self._buffered >= self._max_points or len(self._buffer) == 1:
            self._wake.set()  # flush now, or start waiting for the first point's deadline
        if self._journal is not None and mark is not None:
            try:
                await self._journal.durable(mark)
            except OSError as exc:
                self._withdraw(entry)
                raise Unavailable(f"the metrics journal cannot be written: {exc}") from exc
        return len(batch)

    def _withdraw(self, entry: tuple[float, PointBatch, int]) -> None:
        """Take back points whose journal entry did not reach the disk, unless a flush has them
        already (then the store may hold them: an outcome the caller's 503 leaves open)."""
        in_flight = self._retrying[0] if self._retrying is not None else 0
        for index in range(in_flight, len(self._buffer)):
            if self._buffer[index] is entry:
                del self._buffer[index]
                self._buffered -= len(entry[1])
                return

    def restore(self, recovered: Recovered) -> None:
        """Buffer what a journal held that the store may lack (before the first `add`): the
        range in flight is sent again first, under its token."""
        now = time.monotonic()
        self._buffer = [(now, points, seq) for seq, points in recovered.entries] + self._buffer
        self._buffered = sum(len(points) for _, points, _ in self._buffer)
        if recovered.in_flight is not None:
            first, last, token = recovered.in_flight
            taken = sum(1 for seq, _ in recovered.entries if first <= seq <= last)
            if taken:
                self._retrying = (taken, token)
        if self._buffered:
            self._flush_requested = True
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything buffered so far is in the store; raises if a flush fails."""
        while self._buffered:
            self._ensure_running()
            self._flush_requested = True
            self._wake.set()
            self._retry_now.set()
            asked = self._rounds_started
            while self._rounds_ended <= asked and self._buffered:  # not a round begun before
                self._round_done.clear()
                await self._round_done.wait()
            if self._buffered and self._consecutive_failures:
                raise Unavailable(f"metric points could not be written: {self._last_error}")

    async def aclose(self) -> None:
        """Refuse new points, flush the buffered ones (retrying for up to `close_timeout_s`),
        stop. If points are left, the writer goes on (still retrying) and this raises."""
        if self._task is None:
            self._closing = True
            return
        self._ensure_running()
        self._closing = True
        self._close_deadline = time.monotonic() + self._close_timeout_s
        self._wake.set()
        self._retry_now.set()
        task = self._task
        await asyncio.wait({task})
        if not self._buffered:
            return
        # Keep the points and keep trying rather than drop them: the caller may kill us anyway.
        left, error = self._buffered, self._last_error
        self._closing = False
        self.start()
        raise Unavailable(f"{left} metric points could not be written yet: {error}")

    def close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def stats(self) -> dict[str, Any]:
        failing = self._consecutive_failures > 0 and self._buffered > 0
        return {
            "status": "failing" if failing else "ok",
            "pending": self._buffered,
            "flushed": self._flushed,
            "failures": self._failures,
            "consecutive_failures": self._consecutive_failures,
            "failing_since": _iso(self._failing_since) if failing else None,
            "last_error": self._last_error,
            "last_error_at": _iso(self._last_error_at),
            "loop_crashes": self._loop_crashes,
            "restarts": self._restarts,
        }

    async def read_with_pending(
        self, read: Callable[[], Awaitable[T]]
    ) -> tuple[T, list[PointBatch]]:
        """`read()` of the store, and the batches still buffered, such that every accepted point
        is in exactly one of them.

        A copy of the buffer is taken, then the store is read; the pair is kept only if no flush
        started or ended meanwhile (a flush running across the read could commit before or after
        it). After a few tries it holds flushes off for one read.
        """
        for _ in range(_OPTIMISTIC_READS):
            calls = self._sink_calls
            if calls % 2:  # a flush is running: whether it commits before our read is unknown
                break
            pending = [points for _, points, _ in self._buffer]
            answer = await read()
            if self._sink_calls == calls:
                return answer, pending
        async with self._sink_lock:
            pending = [points for _, points, _ in self._buffer]
            return await read(), pending

    # -- the flusher ----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is not None and self._task.done():
            self.start()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        # Restart a task that died of an exception (the supervisor's own bug, or a BaseException);
        # a cancelled one (event loop shutdown) is restarted lazily by the next call, if any.
        if task is self._task and not task.cancelled() and task.exception() is not None:
            self._record_error(task.exception())
            self.start()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._run()
                return
            except Exception as exc:  # noqa: BLE001 - a bug in the loop: in stats(), loop goes on
                self._loop_crashes += 1
                self._consecutive_failures += 1
                if self._failing_since is None:
                    self._failing_since = datetime.now(UTC)
                self._record_error(exc)
                self._rounds_started += 1  # a failed round, for a flush() waiting on one
                self._rounds_ended = self._rounds_started
                self._round_done.set()
                delay = self._backoff_s(self._loop_crashes)
                if self._closing:
                    delay = min(delay, self._close_deadline - time.monotonic())
                    if delay <= 0:
                        return  # aclose() reports what is left
                await asyncio.sleep(delay)

    async def _run(self) -> None:
        while True:
            await self._until_due()
            if not self._buffered:
                return  # closing, and nothing left
            if await self._flush_once():
                continue
            if self._closing and time.monotonic() >= self._close_deadline:
                return  # aclose() reports what is left
            await self._back_off()

    async def _until_due(self) -> None:
        """Return when a flush is due, or when closing with nothing buffered."""
        while True:
            if self._closing or self._flush_requested or self._buffered >= self._max_points:
                return
            if not self._buffered:
                await self._wake.wait()
                self._wake.clear()
                continue
            wait = self._buffer[0][0] + self._max_delay_s - time.monotonic()
            if wait <= 0:
                return
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                return
            self._wake.clear()

    async def _back_off(self) -> None:
        delay = self._backoff_s(self._consecutive_failures)
        if self._closing:
            delay = min(delay, max(0.0, self._close_deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._retry_now.wait(), delay)
        self._retry_now.clear()

    def _backoff_s(self, attempt: int) -> float:
        # Exponential, capped, with jitter: writers of many Akasha processes must not retry in step.
        delay = min(self._max_retry_delay_s, self._retry_delay_s * 2 ** max(0, attempt - 1))
        return delay * random.uniform(0.5, 1.0)

    async def _flush_once(self) -> bool:
        self._rounds_started += 1
        try:
            return await self._flush_round()
        finally:
            self._rounds_ended = self._rounds_started
            self._round_done.set()

    async def _flush_round(self) -> bool:
        if self._retrying is not None:  # the store may have it already: the same points, token
            taken, token = self._retrying
        else:  # at most about max_points a round, so a backlog drains in store-sized batches
            taken, count, token = 0, 0, uuid.uuid4().hex
            while taken < len(self._buffer) and (taken == 0 or count < self._max_points):
                count += len(self._buffer[taken][1])
                taken += 1
            if self._journal is not None:  # on disk before the store may have it
                await self._journal.flushing(self._buffer[0][2], self._buffer[taken - 1][2], token)
            self._retrying = (taken, token)
        batch = PointBatch.concat([points for _, points, _ in self._buffer[:taken]])
        last_seq = self._buffer[taken - 1][2]
        async with self._sink_lock:
            self._sink_calls += 1
            try:
                await self._sink(batch, token)
            except Exception as exc:  # noqa: BLE001 - any store failure: keep the points, retry
                self._failures += 1
                self._consecutive_failures += 1
                if self._failing_since is None:
                    self._failing_since = datetime.now(UTC)
                self._record_error(exc)
                return False
            finally:
                self._sink_calls += 1
            # Only now, with the store's write returned: points added meanwhile stay buffered.
            self._retrying = None
            del self._buffer[:taken]
            self._buffered -= len(batch)
        self._flushed += len(batch)
        if self._journal is not None:
            try:
                await self._journal.flushed(last_seq)
            except OSError as exc:  # the range would be sent again, under its token: no loss
                self._record_error(exc)
        self._consecutive_failures = 0
        self._failing_since = None
        if not self._buffered:
            self._flush_requested = False
        return True

    def _record_error(self, exc: BaseException) -> None:
        self._last_error = describe_error(exc)
        self._last_error_at = datetime.now(UTC)

    def _failure_note(self) -> str:
        if not self._consecutive_failures or self._failing_since is None:
            return ""
        return f", the store fails since {_iso(self._failing_since)}: {self._last_error}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
